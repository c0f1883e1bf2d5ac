//! Consumer groups (stream-sea's `groupId`): subscriptions with the same group id, stream and
//! options share the stream, each event going to exactly one connected member.
//!
//! A group of `n` members is `n` hub subscribers with the shares `partition=i/n` (by
//! transaction id on `valid_transactions`, by height on `valid_blocks`), member `i` being the
//! `i`-th to join of those still connected: while membership is unchanged each member sees its
//! share in order. A member joining or leaving changes every member's share under the hub's
//! publishing lock ([`Hub::join_group`], [`Hub::leave_group`]), so every block is split by exactly one membership.
//! What was queued for a member that leaves and not yet handed to its socket is handed to the
//! remaining members (whole deliveries, by height), so while one member stays connected no
//! event is lost or sent twice by the node. Groups start live: they hold no position of their
//! own to resume from (the JetStream tier's durable consumers do).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hub::{Hub, Selection, SubscriberId};
use crate::queue::{Delivery, SubscriberQueue, SubscriptionTag};
use crate::subscription::{Partition, MAX_PARTITIONS};

/// Most members of one group: the most shares a partition has.
pub const MAX_GROUP_MEMBERS: usize = MAX_PARTITIONS as usize;

/// Why a member cannot join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group has its most members.
    #[error("a group has at most {max} members")]
    Full {
        /// The limit.
        max: usize,
    },
}

/// One connected member.
struct Member {
    id: SubscriberId,
    queue: Arc<SubscriberQueue>,
    /// Its selection without a share (the share is set from its place in the group).
    selection: Arc<Selection>,
}

/// Every group of a stream server, by key (group id, stream and options).
#[derive(Default)]
pub struct Groups {
    groups: Mutex<HashMap<String, Vec<Member>>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("groups", &self.lock().len())
            .finish()
    }
}

/// `selection` as member `index` of `count`.
fn share(selection: &Selection, index: usize, count: usize) -> Arc<Selection> {
    let mut filter = selection.filter.clone();
    filter.partition = Some(Partition {
        index: u16::try_from(index).unwrap_or(u16::MAX),
        count: u16::try_from(count).unwrap_or(u16::MAX),
    });
    Arc::new(Selection {
        filter,
        ..selection.clone()
    })
}

/// Every member's new share, for a group of `members` (in order).
fn shares(members: &[Member]) -> Vec<(SubscriberId, Arc<Selection>)> {
    let count = members.len();
    members
        .iter()
        .enumerate()
        .map(|(index, member)| (member.id, share(&member.selection, index, count)))
        .collect()
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Member>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member to group `key` (made when it has none): it gets its share of every
    /// block from now on, and every other member's share shrinks at the same block.
    pub fn join(
        &self,
        hub: &Hub,
        key: &str,
        queue: &Arc<SubscriberQueue>,
        selection: &Arc<Selection>,
    ) -> Result<SubscriberId, GroupError> {
        let mut groups = self.lock();
        let members = groups.entry(key.to_owned()).or_default();
        if members.len() >= MAX_GROUP_MEMBERS {
            return Err(GroupError::Full {
                max: MAX_GROUP_MEMBERS,
            });
        }
        let count = members.len() + 1;
        let mine = share(selection, members.len(), count);
        let others: Vec<_> = members
            .iter()
            .enumerate()
            .map(|(index, member)| (member.id, share(&member.selection, index, count)))
            .collect();
        let id = hub.join_group((queue, &mine), &others);
        members.push(Member {
            id,
            queue: queue.clone(),
            selection: selection.clone(),
        });
        Ok(id)
    }

    /// Takes member `id` out of group `key`: the others' shares grow at the same block, and
    /// what was queued for it (subscription `subscription` of `queue`) and not yet handed to
    /// its socket goes to them.
    pub fn leave(
        &self,
        hub: &Hub,
        key: &str,
        id: SubscriberId,
        queue: &SubscriberQueue,
        subscription: u64,
    ) {
        let mut groups = self.lock();
        let Some(members) = groups.get_mut(key) else {
            hub.detach(id);
            return;
        };
        members.retain(|member| member.id != id);
        hub.leave_group(id, &shares(members));
        // Detached: nothing more is pushed to it, so what it holds is all there is.
        let leftover = queue.discard(subscription);
        if members.is_empty() {
            groups.remove(key);
            crate::shrink::release_unused(&mut groups);
            return;
        }
        for delivery in leftover {
            let member = &members[(delivery.height % members.len() as u64) as usize];
            member.queue.push(handed_over(delivery, &member.selection));
        }
    }

    /// Members of group `key`.
    pub fn members(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, Vec::len)
    }
}

/// `delivery`, made another member's: its subscription and its envelope.
fn handed_over(delivery: Delivery, selection: &Selection) -> Delivery {
    Delivery {
        subscription: Some(SubscriptionTag {
            key: selection.key,
            stream: selection.stream,
        }),
        envelope: selection.envelope.clone(),
        ..delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BroadcastMetrics;
    use crate::queue::QueueLimits;
    use crate::subscription::{Filter, Framing, Payload, StreamKind};
    use planetmint_streams_model::{
        AssetIdsEntry, BlockSink, CommittedBlock, CommittedTransaction,
    };
    use std::task::{Context, Poll, Waker};

    fn block(height: u64) -> Arc<CommittedBlock> {
        let transactions = (0..8u64)
            .map(|i| {
                let id = format!("{:016x}{:048x}", (height * 8 + i) * 0x9e37_79b9, i);
                CommittedTransaction {
                    asset_id: id.clone(),
                    asset_ids: vec![AssetIdsEntry::Id(id.clone())],
                    id,
                    operation: "CREATE".into(),
                    output_public_keys: vec![],
                    input_owners: vec![],
                }
            })
            .collect();
        Arc::new(CommittedBlock::synthetic(height, transactions))
    }

    fn member(key: u64) -> (Arc<SubscriberQueue>, Arc<Selection>) {
        let queue = Arc::new(SubscriberQueue::new(QueueLimits {
            max_blocks: 1000,
            max_bytes: usize::MAX,
        }));
        queue.track(key, None);
        let selection = Arc::new(Selection {
            stream: StreamKind::ValidTransactions,
            filter: Filter::default(),
            framing: Framing::PerEvent,
            payload: Payload::Event,
            key,
            envelope: None,
        });
        (queue, selection)
    }

    /// The transaction ids of everything queued for `queue`, with the keys they are tagged
    /// for.
    fn drain(queue: &SubscriberQueue) -> Vec<(u64, String)> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(delivery) = queue.poll_next(&mut cx) {
            let key = delivery.subscription.map_or(0, |tag| tag.key);
            for payload in crate::frame::payloads(&delivery.frames) {
                let event: serde_json::Value = serde_json::from_slice(payload).expect("JSON");
                out.push((
                    key,
                    event["transaction_id"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        out
    }

    #[test]
    fn what_a_leaving_member_had_queued_goes_to_the_others_and_nothing_twice() {
        let hub = Hub::new(64, BroadcastMetrics::unregistered().expect("metrics"));
        hub.start_after(0);
        let groups = Groups::default();
        let (a_queue, a) = member(1);
        let (b_queue, b) = member(2);
        let (c_queue, c) = member(3);
        let a_id = groups.join(&hub, "g", &a_queue, &a).expect("joins");
        groups.join(&hub, "g", &b_queue, &b).expect("joins");
        let mut all = Vec::new();
        for height in 1..=4 {
            let block = block(height);
            all.extend(block.transactions.iter().map(|t| t.id.clone()));
            hub.publish(block);
        }
        // c joins: from block 5 on each of the three gets a third.
        groups.join(&hub, "g", &c_queue, &c).expect("joins");
        for height in 5..=8 {
            let block = block(height);
            all.extend(block.transactions.iter().map(|t| t.id.clone()));
            hub.publish(block);
        }
        // a never read its queue: when it leaves, all of it goes to b and c.
        let (a_backlog, _) = a_queue.backlog();
        assert!(a_backlog > 0);
        groups.leave(&hub, "g", a_id, &a_queue, 1);
        assert_eq!(
            a_queue.backlog(),
            (0, 0),
            "nothing left for the member that left"
        );
        for height in 9..=10 {
            let block = block(height);
            all.extend(block.transactions.iter().map(|t| t.id.clone()));
            hub.publish(block);
        }
        let b_got = drain(&b_queue);
        let c_got = drain(&c_queue);
        assert!(
            b_got.iter().all(|(key, _)| *key == 2),
            "b's deliveries are b's"
        );
        assert!(
            c_got.iter().all(|(key, _)| *key == 3),
            "c's deliveries are c's"
        );
        let mut received: Vec<String> = b_got.into_iter().chain(c_got).map(|(_, id)| id).collect();
        received.sort();
        all.sort();
        assert_eq!(
            received, all,
            "every event once, to the members that stayed"
        );
        assert_eq!(groups.members("g"), 2);
    }
}
