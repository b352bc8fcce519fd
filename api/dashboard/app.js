// Qscrypt dashboard: pool, account and admin pages from the API's own endpoints (/v1/...), redrawn
// by polling (conditional GETs: an unchanged answer is a 304). Plain DOM, no build step; every
// text goes in through textContent.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const POLL_MS = 1000 * Math.max(1, Number(params.get("poll")) || 10);
  const main = document.getElementById("main");
  const cache = new Map();  // url -> {etag, body}
  let timer = null, generation = 0;

  // --- helpers ----------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "onclick" || k === "onsubmit" || k === "onchange") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const UNITS = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  function rate(v) {
    let i = 0;
    while (Math.abs(v) >= 1000 && i < UNITS.length - 1) { v /= 1000; i++; }
    return `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${UNITS[i]}`;
  }
  const int = n => Number(n).toLocaleString("en-US");
  function when(iso) {
    if (!iso) return "—";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    if (s < 90) return `${Math.max(0, Math.round(s))} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return new Date(iso).toLocaleString();
  }
  function token() { return sessionStorage.getItem("qscrypt-token") || ""; }

  class HttpError extends Error {
    constructor(status, body) { super((body && (body.detail || body.title)) || `HTTP ${status}`); this.status = status; }
  }
  async function api(url, opts) {
    opts = opts || {};
    const headers = {Accept: "application/json"};
    if (opts.auth) headers.Authorization = `Bearer ${token()}`;
    const method = opts.method || "GET";
    const cached = method === "GET" ? cache.get(url) : null;
    if (cached) headers["If-None-Match"] = cached.etag;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(url, {method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body)});
    if (r.status === 304 && cached) return cached.body;
    if (r.status === 204) return null;
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new HttpError(r.status, body);
    const etag = r.headers.get("ETag");
    if (etag && method === "GET") cache.set(url, {etag, body});
    return body;
  }
  // A fetch whose 404 is an answer to show, not a failure of the page: the API's own words
  // ("no account 'x': ...") or, where no endpoint answered, that the part is not installed.
  class Missing { constructor(message) { this.message = message; } }
  async function optional(url, opts) {
    try { return await api(url, opts); } catch (e) { if (e.status === 404) return new Missing(e.message); throw e; }
  }
  const missing = (v, what, path) => v instanceof Missing
    ? (v.message && v.message !== "HTTP 404" ? `${what}: ${v.message}.` : `${what} is not available: this Qscrypt has no ${path} (it answered 404).`)
    : null;
  function table(cls, headers, rows, emptyText) {
    if (!rows.length) return el("p", {class: "empty", "data-empty": cls}, emptyText);
    return el("div", {class: "table-wrap"}, el("table", {class: cls},
      el("thead", {}, el("tr", {}, headers.map(h => el("th", {class: h.num ? "num" : null}, h.label || h)))),
      el("tbody", {}, rows.map(r => el("tr", {}, r.map((c, i) =>
        el("td", {class: headers[i].num ? "num" : null}, c)))))));
  }
  function card(title, ...body) { return el("section", {class: "card"}, el("h2", {}, title), ...body); }
  function stat(label, value, key) {
    return el("div", {class: "stat", "data-stat": key}, el("div", {class: "label"}, label),
              el("div", {class: "value"}, value));
  }
  function windowTabs(current, onPick) {
    return el("div", {class: "tabs", role: "group", "aria-label": "window"}, ["1h", "24h", "7d"].map(w =>
      el("button", {type: "button", "aria-pressed": String(w === current), "data-window": w,
                    onclick: () => onPick(w)}, w)));
  }
  function chart(series, windowName, label) {
    const span = {"1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3}[windowName];
    const to = Date.now();
    const points = series.map(p => ({t: Date.parse(p.ts), v: p.hashrate_hs}));
    return el("div", {class: "chart", "data-chart": label},
              QChart.draw(points, {from: to - span, to, format: rate, label}));
  }
  function errorBox(e) { return el("p", {class: "error"}, `Could not load: ${e.message}`); }

  // --- pages ------------------------------------------------------------------------------------
  const state = {poolWindow: "24h", accountWindow: "24h", payoutCursor: null};

  async function poolPage() {
    const [o, series, blocks] = await Promise.all([
      api("/v1/overview"), api(`/v1/hashrate?window=${state.poolWindow}`), api("/v1/blocks?limit=10")]);
    const b = o.blocks;
    const shares = o.shares_24h.map(s => [s.result, s.reason || "—", int(s.shares)]);
    return [
      el("h1", {}, "Pool"),
      el("div", {class: "stats"},
        stat("Hashrate (1 h)", rate(o.hashrate_1h_hs), "hashrate_1h"),
        stat("Hashrate (24 h)", rate(o.hashrate_24h_hs), "hashrate_24h"),
        stat("Workers online", int(o.workers_online), "workers_online"),
        stat("Miners online", int(o.miners_online), "miners_online"),
        stat("Blocks pending", int(b.pending || 0), "blocks_pending"),
        stat("Blocks confirmed", int((b.accepted || 0) + (b.confirmed || 0)), "blocks_confirmed"),
        stat("Blocks orphaned", int(b.orphaned || 0), "blocks_orphaned")),
      card("Hashrate", windowTabs(state.poolWindow, w => { state.poolWindow = w; refresh(); }),
           chart(series.points, state.poolWindow, "pool-hashrate")),
      el("div", {class: "grid"},
        card("Shares, last 24 h", table("shares", ["Result", "Reason", {label: "Shares", num: true}], shares,
             "No shares in the last 24 hours: no miner has submitted work.")),
        card("Mining now", table("profiles", ["Profile", "Coin", "Pool", "Since"],
             o.profiles.map(p => [p.profile, p.coin, p.pool || "solo", when(p.decided_at)]),
             "No decisions yet: the decision API has not chosen a coin for any profile.")),
        card("Upstreams", table("upstreams", ["Upstream", "State", "Since"],
             o.upstreams.map(u => [u.upstream,
               el("span", {class: u.event === "down" ? "down" : "up"}, u.event === "down" ? "down" : u.event === "up" ? "up" : `up (${u.event})`),
               when(u.ts)]),
             "No upstream has reported a state yet: is the proxy running with a database?")),
        card("Blocks", table("blocks", ["Height", "Coin", "Status", "Worker", "Hash", "Found"],
             blocks.items.map(k => [int(k.height), k.coin, k.status, k.worker || "—",
               el("a", {href: `/v1/blocks?coin=${encodeURIComponent(k.coin)}&before=${k.id + 1}&limit=1`, title: k.hash},
                  el("code", {}, `${k.hash.slice(0, 12)}…`)), when(k.found_at)]),
             "No blocks found yet.")),
        card("Recent switches", table("switches", ["When", "Profile", "From", "To", "Miners"],
             o.switches.map(s => [when(s.ts), s.profile, s.from_upstream || "—", s.to_upstream, int(s.worker_count)]),
             "No profit switches yet.")),
        card("Recent failovers", table("failovers", ["When", "Event", "To", "From"],
             o.failovers.map(f => [when(f.ts), f.event, f.upstream, (f.detail && f.detail.from) || "—"]),
             "No failovers: every upstream has stayed up."))),
    ];
  }

  function accountForm(account) {
    const input = el("input", {name: "account", placeholder: "user name or payout address", value: account || "",
                               "aria-label": "account", size: 34});
    return el("form", {class: "inline", onsubmit: ev => {
      ev.preventDefault();
      const v = input.value.trim();
      if (v) location.hash = `#/account/${encodeURIComponent(v)}`;
    }}, input, el("button", {class: "primary", type: "submit"}, "Show"));
  }

  async function accountPage(account) {
    if (!account) return [el("h1", {}, "Account"), accountForm(""),
      el("p", {class: "empty"}, "Enter the user name or payout address your miners authorize as (the part of the worker name before the dot).")];
    const a = encodeURIComponent(account);
    const cursor = state.payoutCursor ? `&cursor=${encodeURIComponent(state.payoutCursor)}` : "";
    const [workers, series, balances, payouts] = await Promise.all([
      api(`/v1/accounts/${a}/workers?limit=200`), api(`/v1/accounts/${a}/hashrate?window=${state.accountWindow}`),
      optional(`/v1/accounts/${a}/balances`), optional(`/v1/accounts/${a}/payouts?limit=20${cursor}`)]);
    const rows = workers.items.map(w => {
      const reasons = Object.entries(w.rejected_by_reason).map(([r, n]) => `${r}: ${n}`).join(", ");
      return [w.name, rate(w.hashrate_hs), when(w.last_share_at), int(w.accepted), int(w.rejected), int(w.stale), reasons || "—"];
    });
    const total = workers.items.reduce((s, w) => s + w.hashrate_hs, 0);
    const balanceCard = balances instanceof Missing
      ? el("p", {class: "empty", "data-empty": "balances"}, missing(balances, "No balance", "GET /v1/accounts/…/balances"))
      : table("balances", ["Coin", {label: "Immature", num: true}, {label: "Pending", num: true}, {label: "Paid", num: true}],
              balances.balances.map(b => [b.coin, b.immature, b.pending, b.paid]), "No earnings yet.");
    const payoutCard = payouts instanceof Missing
      ? el("p", {class: "empty", "data-empty": "payouts"}, missing(payouts, "No payout history", "GET /v1/accounts/…/payouts"))
      : [table("payouts", ["Created", "Coin", {label: "Amount", num: true}, "Status", "Transaction"],
               payouts.items.map(p => [when(p.created_at), p.coin, p.amount, p.status, p.txid ? el("code", {}, p.txid) : "—"]),
               "No payouts yet."),
         payouts.next ? el("button", {type: "button", onclick: () => { state.payoutCursor = payouts.next; refresh(); }}, "Older payouts") : null,
         state.payoutCursor ? el("button", {type: "button", onclick: () => { state.payoutCursor = null; refresh(); }}, "Newest") : null];
    return [
      el("h1", {}, `Account ${account}`), accountForm(account),
      el("div", {class: "stats"},
        stat("Hashrate (1 h)", rate(total), "account_hashrate"),
        stat("Workers", int(workers.items.length), "account_workers"),
        stat("Workers online", int(workers.items.filter(w => w.last_share_at && Date.now() - Date.parse(w.last_share_at) < 600e3).length), "account_online")),
      card("Hashrate", windowTabs(state.accountWindow, w => { state.accountWindow = w; refresh(); }),
           chart(series.total, state.accountWindow, "account-hashrate"),
           series.workers.length ? el("div", {class: "worker-charts"}, series.workers.map(w =>
             el("div", {"data-worker": w.worker}, el("h3", {}, w.worker), chart(w.points, state.accountWindow, `worker-${w.worker}`)))) : null),
      card("Workers", table("workers", ["Worker", {label: "Hashrate", num: true}, "Last share", {label: "Accepted", num: true},
        {label: "Rejected", num: true}, {label: "Stale", num: true}, "Rejected by reason"], rows,
        `No workers for ${account}: no miner has authorized as ${account} or ${account}.RIG yet.`)),
      el("div", {class: "grid"}, card("Balance", balanceCard), card("Payouts", payoutCard)),
    ];
  }

  async function adminPage() {
    const tokenInput = el("input", {type: "password", name: "token", placeholder: "admin token", value: token(),
                                    "aria-label": "admin token", autocomplete: "off"});
    const login = el("form", {class: "inline", onsubmit: ev => {
      ev.preventDefault(); sessionStorage.setItem("qscrypt-token", tokenInput.value.trim()); refresh();
    }}, tokenInput, el("button", {class: "primary", type: "submit"}, "Use token"));
    if (!token()) return [el("h1", {}, "Admin"), login,
      el("p", {class: "empty"}, "Enter the API token (api.token or QSCRYPT_API_TOKEN) to approve payouts, ban workers and edit profiles.")];
    const act = async (fn) => { try { await fn(); } catch (e) { alert(e.message); } refresh(); };
    const [bans, profiles, payouts, fees] = await Promise.all([
      api("/v1/bans?limit=200", {auth: true}), api("/v1/profiles"),
      optional("/v1/payouts?status=awaiting_approval", {auth: true}), optional("/v1/fees", {auth: true})]);
    const kind = el("select", {name: "kind", "aria-label": "ban kind"}, el("option", {value: "worker"}, "worker"), el("option", {value: "ip"}, "IP"));
    const value = el("input", {name: "value", placeholder: "worker, account or IP", "aria-label": "ban value", required: ""});
    const reason = el("input", {name: "reason", placeholder: "reason", "aria-label": "ban reason"});
    const banForm = el("form", {class: "inline", "data-form": "ban", onsubmit: ev => {
      ev.preventDefault();
      act(() => api("/v1/bans", {method: "POST", auth: true, body: {kind: kind.value, value: value.value.trim(), reason: reason.value}}));
    }}, kind, value, reason, el("button", {class: "primary", type: "submit"}, "Ban"));
    // GET /v1/fees lists only the coins whose fee was set here (the others use [payouts] fee_percent):
    // a coin not listed yet is set with the form under the table.
    const feeItems = fees instanceof Missing ? null : fees.items;
    const feeCoin = el("input", {name: "fee_coin", placeholder: "coin, e.g. LTC", "aria-label": "fee coin", size: 8, required: "",
                                 pattern: "[A-Za-z0-9]{1,10}"});
    const feePercent = el("input", {type: "number", name: "fee_percent", min: "0", max: "100", step: "0.01", placeholder: "fee %",
                                    "aria-label": "fee percent", required: ""});
    const feeForm = el("form", {class: "inline", "data-form": "fee", onsubmit: ev => {
      ev.preventDefault();
      act(() => api(`/v1/fees/${encodeURIComponent(feeCoin.value.trim().toUpperCase())}`,
                    {method: "PUT", auth: true, body: {fee_percent: Number(feePercent.value)}}));
    }}, feeCoin, feePercent, el("button", {class: "primary", type: "submit"}, "Set fee"));
    return [
      el("h1", {}, "Admin"), login,
      card("Payouts awaiting approval", payouts instanceof Missing
        ? el("p", {class: "empty", "data-empty": "approvals"}, missing(payouts, "Payout approval", "GET /v1/payouts"))
        : table("approvals", ["ID", "Account", "Coin", {label: "Amount", num: true}, "Created", ""],
            payouts.items.map(p => [String(p.id), p.account, p.coin, p.amount, when(p.created_at),
              el("button", {type: "button", class: "primary", "data-approve": String(p.id),
                            onclick: () => act(() => api(`/v1/payouts/${p.id}/approve`, {method: "POST", auth: true}))}, "Approve")]),
            "No payouts are waiting for approval.")),
      card("Bans", banForm, table("bans", ["Kind", "Value", "Reason", "Since", "Until", ""],
        bans.items.map(b => [b.kind, b.value, b.reason || "—", when(b.created_at), b.expires_at ? new Date(b.expires_at).toLocaleString() : "lifted by hand",
          el("button", {type: "button", "data-unban": b.value, onclick: () => act(() => api(`/v1/bans/${b.id}`, {method: "DELETE", auth: true}))}, "Unban")]),
        "Nobody is banned.")),
      card("Operator fee", feeItems === null
        ? el("p", {class: "empty", "data-empty": "fees"}, missing(fees, "Fees", "GET /v1/fees"))
        : [table("fees", ["Coin", {label: "Fee %", num: true}, ""], feeItems.map(f => {
            const input = el("input", {type: "number", min: "0", max: "100", step: "0.01", value: String(f.fee_percent), "aria-label": `fee ${f.coin}`, size: 6});
            return [f.coin, input, el("button", {type: "button", onclick: () => act(() =>
              api(`/v1/fees/${encodeURIComponent(f.coin)}`, {method: "PUT", auth: true, body: {fee_percent: Number(input.value)}}))}, "Save")];
          }), "No fee set here yet: every coin pays its [payouts] fee_percent."), feeForm]),
      card("Profiles", profiles.items.length ? profiles.items.map(p => {
        const {name, updated_at, ...editable} = p;
        const text = el("textarea", {"aria-label": `profile ${name}`, "data-profile": name}, JSON.stringify(editable, null, 2));
        return el("details", {}, el("summary", {}, `${name} (${p.strategy})`), text,
          el("button", {type: "button", class: "primary", onclick: () => act(async () => {
            let body;
            try { body = JSON.parse(text.value); } catch (e) { throw new Error(`profile ${name}: not valid JSON: ${e.message}`); }
            await api(`/v1/profiles/${encodeURIComponent(name)}`, {method: "PUT", auth: true, body});
          })}, "Save"));
      }) : el("p", {class: "empty"}, "No profiles.")),
    ];
  }

  // --- routing and polling ----------------------------------------------------------------------
  function route() {
    const [, page, ...rest] = (location.hash || "#/pool").split("/");
    return {page: page || "pool", arg: rest.length ? decodeURIComponent(rest.join("/")) : ""};
  }
  async function refresh() {
    clearTimeout(timer);
    const mine = ++generation;
    const {page, arg} = route();
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
    // Keep what is being typed: the admin page only redraws on demand.
    const editing = main.contains(document.activeElement) && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName);
    let content;
    try {
      content = page === "account" ? await accountPage(arg) : page === "admin" ? await adminPage() : await poolPage();
    } catch (e) {
      if (e.status === 401) { sessionStorage.removeItem("qscrypt-token"); content = [errorBox(new Error("the token was refused: enter it again"))]; }
      else content = [errorBox(e)];
    }
    if (mine !== generation) return;
    if (!(editing && page === "admin")) {
      main.replaceChildren(...content.flat().filter(Boolean));
      main.dataset.page = page;
      main.dataset.loaded = String(generation);
    }
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    timer = setTimeout(refresh, POLL_MS);
  }
  window.addEventListener("hashchange", () => { state.payoutCursor = null; refresh(); });
  refresh();
})();
