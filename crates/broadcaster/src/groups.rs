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
