// The live explorer page's script (explorer.html), served at GET /explorer.js: a file of its own so
// that the page's Content-Security-Policy allows no inline script.
"use strict";
(() => {
  const MAX_BLOCKS = 200;   // older blocks leave the page
  const MAX_TXS = 500;      // transaction rows shown per block
  const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  const MEANING = {
    1000: "normal close", 1001: "server shutting down", 1002: "protocol error",
    1006: "connection lost or refused",
    1007: "invalid data", 1008: "policy violation", 1009: "frame too big", 1011: "server error",
    4000: "too slow", 4001: "history not available",
  };
  const $ = (id) => document.getElementById(id);
  const blocksEl = $("blocks");

  // What is shown and how it is asked for.
  const view = { keys: [], assets: [], keyIn: "outputs" };
  const entries = new Map(); // height -> {el, arrived, blk, tx}
  let generation = 0;        // bumps on filter change: answers to older subscribes are dropped
  let reconnects = 0, duplicates = 0, txShown = 0, sockets = 0;

  // Two subscriptions on one socket; `cursor` is the last height fully received on each
  // (null: live), `sub` its id on the current socket (null: not subscribed).
  const streams = {
    tx: { name: "valid_transactions", batch: true },
    blk: { name: "valid_blocks", batch: false },
  };
  for (const s of Object.values(streams)) Object.assign(s, { cursor: null, replayUpTo: null, sub: null, status: "connecting", message: "" });
  // The one JSON-RPC socket: answers are matched to requests by id.
  const channel = { ws: null, retry: 0, timer: null, status: "connecting", message: "", nextId: 1, pending: new Map(), closing: null };
  const bySub = new Map(); // subscription id -> stream
  let rpcUrl = null;

  function base58Length(text) {
    const bytes = [];
    for (const ch of text) {
      let carry = B58.indexOf(ch);
      if (carry < 0) return -1;
      for (let i = 0; i < bytes.length; i++) {
        carry += bytes[i] * 58;
        bytes[i] = carry & 255;
        carry >>= 8;
      }
      while (carry > 0) { bytes.push(carry & 255); carry >>= 8; }
    }
    let zeros = 0;
    while (zeros < text.length && text[zeros] === "1") zeros++;
    return zeros + bytes.length;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k.startsWith("data-") || k.startsWith("aria-") || k === "title" || k === "datetime") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c);
    return node;
  }

  function setCount(id, value) {
    const node = $(id);
    node.textContent = String(value);
    node.dataset.value = String(value);
  }

  function clock(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  // ---- connection state ----
  function renderState() {
    const subs = Object.values(streams);
    const state = $("state");
    let name, text;
    const failed = subs.find((s) => s.status === "error");
    if (channel.status === "error") { name = "error"; text = channel.message; }
    else if (failed) { name = "error"; text = failed.message; }
    else if (channel.status === "reconnecting") {
      name = "reconnecting";
      text = "Reconnecting" + (channel.message ? " — " + channel.message : "…");
    } else if (channel.status === "open" && subs.every((s) => s.status === "live")) { name = "live"; text = "Live"; }
    else { name = "connecting"; text = "Connecting…"; }
    if (state.dataset.state !== name || state.textContent !== text) {
      state.dataset.state = name;
      state.textContent = text;
    }
    const c = streams.tx.cursor;
    setCount("cursor", c === null ? "–" : c);
    $("cursor").dataset.value = c === null ? "" : String(c);
  }

  function showClose(code, reason, info) {
    const p = $("last-close");
    const why = (info && info.reason) || reason;
    let text = `Last disconnect: the stream channel closed ${code}: ` + (why ? `“${why}”` : MEANING[code] || "no reason given");
    if (code === 1006) text += " (no close frame: the node went away, or refused the upgrade, e.g. HTTP 403 for this page's Origin)";
    const heights = Object.values(streams).filter((s) => s.cursor !== null).map((s) => `${s.name} ${s.cursor}`);
    if (heights.length) text += `, resuming after ${heights.join(", ")}`;
    text += ` at ${clock(Date.now())}.`;
    p.textContent = text;
    p.dataset.code = String(code);
    p.hidden = false;
  }

  // ---- discovery and the socket ----
  async function discover() {
    const res = await fetch(new URL("api/v1/streams", location.href), { cache: "no-store" });
    if (!res.ok) throw new Error(`/api/v1/streams answered HTTP ${res.status}`);
    const doc = await res.json();
    const url = doc.rpc_url;
    if (typeof url !== "string" || !/^wss?:\/\//.test(url)) throw new Error("/api/v1/streams names no rpc_url WebSocket URL");
    if (location.protocol === "https:" && url.startsWith("ws:")) {
      throw new Error(`the node advertises ${url}, which a https page may not open (set streams.advertised_scheme = "wss")`);
    }
    rpcUrl = url;
    const ep = $("endpoints");
    ep.replaceChildren("Stream channel: ", el("code", {}, url), " (from ", el("code", {}, "/api/v1/streams"),
      "), one WebSocket with a subscription to ", el("code", {}, "valid_transactions"), " and one to ", el("code", {}, "valid_blocks"), ".");
  }

  // The height the node has streamed so far (its /ready document), or null.
  async function streamedHeight() {
    try {
      const res = await fetch(new URL("ready", location.href), { cache: "no-store" });
      const r = await res.json();
      if (r.ready && Number.isSafeInteger(r.streamed_height) && r.streamed_height > 0) return r.streamed_height;
    } catch (_) { /* an API without /ready */ }
    return null;
  }

  // Sends a JSON-RPC request on the open socket; `onAnswer` gets the answer object.
  function call(method, params, onAnswer) {
    const ws = channel.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const id = channel.nextId++;
    channel.pending.set(id, onAnswer);
    ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  }

  function subscribe(stream) {
    const params = { stream: stream.name };
    if (stream.batch) params.batch = "block";
    if (view.keys.length) params.public_key = view.keys;
    if (view.keys.length && view.keyIn !== "outputs") params.public_key_in = view.keyIn;
    if (view.assets.length) params.asset_id = view.assets;
    if (stream.cursor !== null) params.from_height = stream.cursor;
    const gen = generation;
    stream.sub = null;
    stream.status = "connecting";
    call("subscribe", params, (answer) => {
      if (gen !== generation) {
        // The filter changed while this was on its way: it is no longer wanted.
        if (typeof answer.result === "string") call("unsubscribe", { subscription: answer.result }, () => {});
        return;
      }
      if (answer.error) { subscriptionFailed(stream, answer.error); return; }
      stream.sub = String(answer.result);
      bySub.set(stream.sub, stream);
      stream.status = "live";
      stream.message = "";
      renderState();
    });
  }

  function subscriptionFailed(stream, error) {
    const lowest = error.data && error.data.lowest_height;
    if (error.code === -32003 && Number.isSafeInteger(lowest)) {
      stream.cursor = Math.max(0, lowest - 1); // older history is gone: start where it begins
      subscribe(stream);
      return;
    }
    stream.status = "error";
    stream.message = `the node refused the ${stream.name} subscription: ${error.message} (${error.code})`;
    renderState();
  }

  function onRpc(ws, data) {
    if (ws !== channel.ws) return;
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    if (msg.id !== undefined && msg.id !== null) {
      const onAnswer = channel.pending.get(msg.id);
      channel.pending.delete(msg.id);
      if (onAnswer) onAnswer(msg);
      return;
    }
    const params = msg.params || {};
    const stream = bySub.get(params.subscription);
    if (msg.method === "subscription") {
      if (!stream) return; // the last messages of a subscription just replaced
      const m = params.result;
      if (!m || !Number.isSafeInteger(m.height)) return;
      channel.retry = 0;
      if (stream === streams.tx) onBatch(m); else onBlock(m);
      stream.cursor = m.height; // a batch or block message is a whole block
      renderState();
    } else if (msg.method === "subscription_error" && stream) {
      bySub.delete(params.subscription);
      subscriptionFailed(stream, params.error || {});
    } else if (msg.method === "closing") {
      channel.closing = params; // its last_heights are complete (the close reason may not be)
    }
  }

  async function connect() {
    channel.timer = null;
    try {
      // Blocks up to what the node has already streamed come from history: marked "replayed".
      const resuming = Object.values(streams).some((s) => s.cursor !== null);
      const [, head] = await Promise.all([discover(), resuming ? streamedHeight() : null]);
      for (const s of Object.values(streams)) s.replayUpTo = head;
    } catch (err) {
      if (!rpcUrl) { retry("discovery failed: " + err.message); return; }
      // keep the URL found before: the API may be down while the stream port is not
    }
    let ws;
    try {
      ws = new WebSocket(rpcUrl);
    } catch (err) {
      channel.status = "error";
      channel.message = "cannot open the stream channel: " + err.message;
      renderState();
      return;
    }
    channel.ws = ws;
    channel.closing = null;
    sockets++;
    setCount("count-sockets", sockets);
    let openedAt = 0;
    ws.onopen = () => {
      if (channel.ws !== ws) return;
      openedAt = Date.now();
      channel.status = "open";
      channel.message = "";
      for (const s of Object.values(streams)) subscribe(s);
      renderState();
    };
    ws.onmessage = (ev) => onRpc(ws, ev.data);
    ws.onclose = (ev) => {
      if (channel.ws !== ws) return;
      channel.ws = null;
      channel.pending.clear();
      let info = null;
      try { info = JSON.parse(ev.reason); } catch (_) { /* plain text or empty */ }
      // The server says it sent everything up to these heights (per subscription).
      const heights = (channel.closing && channel.closing.last_heights) || (info && info.last_heights) || {};
      for (const s of Object.values(streams)) {
        const h = s.sub !== null ? heights[s.sub] : undefined;
        if (Number.isSafeInteger(h) && (s.cursor === null || h > s.cursor)) s.cursor = h;
        s.sub = null;
        if (s.status !== "error") s.status = "connecting";
      }
      bySub.clear();
      if (openedAt && Date.now() - openedAt > 3000) channel.retry = 0;
      if (openedAt) showClose(ev.code, ev.reason, info); // failed attempts show in #state only
      if (ev.code === 1008) {
        channel.status = "error";
        channel.message = `the node refused the stream channel (1008${info && info.reason ? ": " + info.reason : ""}); reload the page to try again`;
        renderState();
        return;
      }
      retry(`the stream channel closed ${ev.code}` + (MEANING[ev.code] ? ` (${MEANING[ev.code]})` : ""));
    };
  }

  function retry(why) {
    const delay = Math.min(10000, 500 * 2 ** channel.retry) * (0.8 + Math.random() * 0.4);
    channel.retry = Math.min(channel.retry + 1, 10);
    channel.status = "reconnecting";
    channel.message = `${why}; next try in ${(delay / 1000).toFixed(1)} s`;
    reconnects++;
    setCount("count-reconnects", reconnects);
    renderState();
    channel.timer = setTimeout(connect, delay);
  }

  // A filter change: the old subscriptions end and new ones start on the same socket, each
  // from its stream's cursor. While the socket is down, the next connect subscribes anew.
  function restart() {
    generation++;
    for (const s of Object.values(streams)) {
      if (s.sub !== null) {
        call("unsubscribe", { subscription: s.sub }, () => {});
        bySub.delete(s.sub);
        s.sub = null;
      }
      if (s.status === "error") s.status = "connecting";
      if (channel.ws && channel.ws.readyState === WebSocket.OPEN) subscribe(s);
    }
    renderState();
  }

  // ---- blocks ----
  function entryFor(height) {
    let entry = entries.get(height);
    if (entry) return entry;
    const arrived = Date.now();
    const replayed = Object.values(streams).some((s) => s.replayUpTo !== null && height <= s.replayUpTo);
    const node = el("li", { className: "block new", "data-height": String(height), "data-complete": "false",
      "data-replayed": String(replayed), "aria-label": `Block ${height}` });
    entry = { el: node, arrived, blk: null, tx: null, height, replayed };
    entries.set(height, entry);
    // newest first: before the first shown block with a lower height
    let after = blocksEl.firstElementChild;
    while (after && Number(after.dataset.height) > height) after = after.nextElementSibling;
    blocksEl.insertBefore(node, after);
    while (entries.size > MAX_BLOCKS) {
      const oldest = blocksEl.lastElementChild;
      entries.delete(Number(oldest.dataset.height));
      oldest.remove();
    }
    $("empty").hidden = true;
    setCount("count-blocks", entries.size);
    const higher = node.previousElementSibling;
    render(entry);
    if (higher) render(entries.get(Number(higher.dataset.height)));
    return entry;
  }

  function filtered() { return view.keys.length > 0 || view.assets.length > 0; }

  function render(entry) {
    const { el: node, blk, tx, height } = entry;
    const total = blk ? blk.transaction_ids.length : null;
    const shown = tx ? tx.transactions.length : 0;
    const complete = blk !== null && (tx !== null || (!filtered() && total === 0));
    node.dataset.complete = String(complete);
    if (blk) node.dataset.hash = blk.hash;
    const lower = node.nextElementSibling && entries.get(Number(node.nextElementSibling.dataset.height));
    let gap = "first block on this page";
    if (entry.replayed) gap = "replayed from history";
    else if (lower) gap = `+${((entry.arrived - lower.arrived) / 1000).toFixed(2)} s after block ${lower.height}`;
    let count;
    if (total === null) count = `${shown} transaction${shown === 1 ? "" : "s"}`;
    else if (filtered()) count = `${shown} of ${total} transaction${total === 1 ? "" : "s"} match`;
    else count = `${total} transaction${total === 1 ? "" : "s"}`;
    const head = el("div", { className: "block-head" },
      el("h3", {}, `Block ${height}`),
      el("span", { className: "count" }, count),
      el("span", { className: "muted" }, "arrived ", el("time", { datetime: new Date(entry.arrived).toISOString() }, clock(entry.arrived))),
      el("span", { className: "muted gap", title: "Time between this block's arrival and the previous block's arrival in this browser (not commit latency)" }, gap));
    const parts = [head, el("p", { className: "hash muted" }, "hash ", blk ? el("code", { className: "block-hash" }, blk.hash || "(empty)") : "(waiting for valid_blocks)")];
    if (tx) {
      const list = el("ol", { className: "txs", "aria-label": `Transactions of block ${height}` });
      for (const t of tx.transactions.slice(0, MAX_TXS)) list.append(txRow(t));
      if (shown > MAX_TXS) list.append(el("li", { className: "muted" }, `… and ${shown - MAX_TXS} more`));
      parts.push(list);
    } else if (total) {
      parts.push(el("p", { className: "muted" }, "transactions on their way…"));
    }
    node.replaceChildren(...parts);
  }

  function txRow(t) {
    const ids = Array.isArray(t.asset_ids) ? t.asset_ids : [];
    // Items are ids, except for version 2.0 transactions: the asset object itself.
    const shown = (a) => (typeof a === "string" ? a : JSON.stringify(a));
    const asset = el("div", {}, el("span", { className: "label" }, "asset"));
    if (t.asset_id === t.transaction_id) asset.append(el("span", { className: "muted" }, "new asset (its own id)"));
    else asset.append(el("code", { className: "asset-id" }, String(t.asset_id)));
    if (ids.some((a) => shown(a) !== t.asset_id)) {
      asset.append(" ", el("span", { className: "label" }, "asset_ids"));
      ids.forEach((a, i) => asset.append(i ? ", " : "", el("code", {}, shown(a))));
    }
    return el("li", { className: "tx", "data-transaction-id": t.transaction_id, "data-asset-id": t.asset_id || "" },
      el("div", {}, el("span", { className: "label" }, "tx"), el("code", { className: "txid" }, t.transaction_id)),
      asset);
  }

  function onBlock(msg) {
    if (typeof msg.hash !== "string" || !Array.isArray(msg.transaction_ids)) return;
    const entry = entryFor(msg.height);
    if (entry.blk) { duplicate(); return; }
    entry.blk = msg;
    render(entry);
  }

  function onBatch(msg) {
    if (!Array.isArray(msg.transactions)) return;
    const entry = entryFor(msg.height);
    if (entry.tx) { duplicate(); return; }
    entry.tx = msg;
    txShown += msg.transactions.length;
    setCount("count-transactions", txShown);
    render(entry);
  }

  function duplicate() {
    duplicates++;
    setCount("count-duplicates", duplicates);
    $("duplicates-row").hidden = false;
  }

  function clearBlocks(note) {
    entries.clear();
    blocksEl.replaceChildren();
    txShown = 0;
    setCount("count-blocks", 0);
    setCount("count-transactions", 0);
    $("empty").hidden = false;
    $("empty").textContent = note;
  }

  // ---- filter form ----
  function parseFilter(text) {
    const keys = [], assets = [], bad = [];
    for (const raw of text.split(/[\s,]+/).filter(Boolean)) {
      if (/^[0-9a-fA-F]{64}$/.test(raw)) assets.push(raw.toLowerCase());
      else if (base58Length(raw) === 32) keys.push(raw);
      else bad.push(raw);
    }
    return { keys: [...new Set(keys)], assets: [...new Set(assets)], bad };
  }

  function fail(input, message) {
    const err = $("filter-error");
    err.textContent = message;
    err.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }

  function apply(keys, assets, keyIn, fromHeight) {
    for (const id of ["filter", "from-height"]) $(id).removeAttribute("aria-invalid");
    $("filter-error").hidden = true;
    view.keys = keys;
    view.assets = assets;
    view.keyIn = keyIn;
    // Both subscriptions resume from the same point, the lower of their cursors: every block
    // after it that matches the new filter comes (again) on both, nothing in between is skipped.
    const known = Object.values(streams).map((s) => s.cursor).filter((c) => c !== null);
    const from = fromHeight !== null ? fromHeight : (known.length === 2 ? Math.min(...known) : (known[0] ?? null));
    for (const s of Object.values(streams)) s.cursor = from;
    const parts = [];
    if (keys.length) parts.push(`public key ${keys.join(" or ")}${keyIn === "any" ? " (outputs or inputs)" : ""}`);
    if (assets.length) parts.push(`asset ${assets.join(" or ")}`);
    const af = $("active-filter");
    af.textContent = parts.length ? `Showing transactions of ${parts.join(", and of ")}.` : "Showing every transaction.";
    af.dataset.filter = [...keys, ...assets].join(",");
    clearBlocks(from === null ? "Waiting for the next matching block…" : `Waiting for matching blocks after height ${from}…`);
    restart();
  }

  $("filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("filter");
    const { keys, assets, bad } = parseFilter(input.value);
    if (bad.length) {
      fail(input, `Not a public key (base58, 32 bytes) or an asset id (64 hex digits): ${bad.join(", ")}`);
      return;
    }
    const fh = $("from-height");
    let fromHeight = null;
    const h = fh.value.trim();
    if (h !== "") {
      if (!/^\d{1,15}$/.test(h)) { fail(fh, "Replay after height: a whole number (0 replays the whole chain)."); return; }
      fromHeight = Number(h);
    }
    fh.value = ""; // a one-time jump back, not part of the filter
    apply(keys, assets, $("key-in-any").checked ? "any" : "outputs", fromHeight);
  });

  $("clear").addEventListener("click", () => {
    $("filter").value = "";
    $("from-height").value = "";
    apply([], [], "outputs", null);
  });

  (async () => {
    // Start from what the node has streamed when the page opened, so a block committed while
    // the socket connects is replayed rather than missed.
    const start = await streamedHeight();
    for (const s of Object.values(streams)) s.cursor = start;
    if (start !== null) $("empty").textContent = `Waiting for blocks after height ${start}…`;
    renderState();
    connect();
  })();
})();
