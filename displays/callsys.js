/* callsys.js — what every page of displays/ shares: the connection to the server and a few
 * formatting helpers. Plain JS, no build step, no dependencies (halls run offline).
 *
 * The connection mirrors docs/protocol.md and callsys.client.Device:
 *   - the `callsys.v1.json` subprotocol; the first message is `hello` (role, token, and the
 *     role's `window` / `subscribe`);
 *   - requests carry an `id`; the reply (`ok` / `error`) is matched by it;
 *   - every command carries an idempotency `key` (a random device prefix and a counter), and a
 *     request whose answer was lost (or answered `unavailable`: the server was stopping) is
 *     sent again with the same key after reconnecting, for up to RETRY_FOR_S — so a kiosk
 *     gets one ticket, never two;
 *   - it reconnects by itself with jittered exponential backoff (0.25 s doubling to 10 s,
 *     ±50 %), except after close 4000/4001/4009 (a bad hello, a bad token, another console
 *     took the window over): reconnecting cannot help there;
 *   - after every (re)connect the page re-syncs from the fresh `board` push;
 *   - it pings every third of the server's idle timeout;
 *   - `revive()` (a phone woke up, the page became visible, the network came back) skips the
 *     backoff wait when down, and replaces a socket whose ping gets no answer within REVIVE_S
 *     (a sleeping phone's socket may be dead without the browser having noticed).
 * The hall clock is the server's: server_time + (now - received_at) * clock_speed, shown in
 * the hall's timezone — never the browser's own time (`make demo` runs a virtual clock).
 */
"use strict";

const Callsys = (() => {
  const SUBPROTOCOL = "callsys.v1.json";
  const BACKOFF_FIRST_S = 0.25;   // first reconnect delay, doubled after each failure
  const BACKOFF_MAX_S = 10.0;     // longest reconnect delay
  const JITTER = 0.5;             // ± fraction of the delay
  const RETRY_FOR_S = 60.0;       // how long a request is retried across reconnects
  const DEFAULT_PING_S = 40.0;    // ping interval when welcome has no idle timeout
  const REVIVE_S = 5.0;           // seconds revive() waits for a ping's answer before reconnecting
  const COMMANDS = new Set([
    "take_number", "book_slot", "check_in", "cancel", "requeue", "call_next", "call_number", "recall",
    "no_show", "start", "finish", "transfer", "park", "return_ticket", "pause", "resume", "open_window",
    "close_window", "reassign", "reset_day",
  ]);
  // Closes after which reconnecting cannot help (see docs/protocol.md, close codes).
  const FINAL_CLOSES = { 4000: "handshake failed", 4001: "unauthorized", 4009: "signed in elsewhere" };

  const params = new URLSearchParams(location.search);

  /** A query parameter of the page URL, or `fallback`. */
  function param(name, fallback = null) {
    const value = params.get(name);
    return value === null || value === "" ? fallback : value;
  }

  /** The path of `route` (e.g. "ws", "api/hall", "/qr/X.svg") on this page's server, relative to the
   * page's directory: "/ws" for a page at /board, "/halls/<id>/ws" for a page a network router serves
   * at /halls/<id>/board (see docs/protocol.md). The server's own absolute paths ("/phone?...") too. */
  function path(route) {
    const base = location.protocol.startsWith("http") ? location.pathname.replace(/[^/]*$/, "") : "/";
    return base + route.replace(/^\//, "");
  }

  /** The WebSocket URL: `?ws=` or ws(s)://<this host>/ws (under the page's prefix, if any). */
  function wsUrl() {
    const given = param("ws");
    if (given) return given;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${path("ws")}`;
  }

  /** The device token of `role`: `?token=` (remembered in localStorage) or the remembered one. */
  function token(role) {
    const key = `callsys.token.${role}`;
    const given = param("token");
    try {
      if (given) localStorage.setItem(key, given);
      return given || localStorage.getItem(key);
    } catch (_) {  // storage disabled (file:// in some browsers, private modes)
      return given;
    }
  }

  function forgetToken(role) {
    try { localStorage.removeItem(`callsys.token.${role}`); } catch (_) { /* nothing stored */ }
  }

  /** Show a small form asking for the `role` token; reloads the page with `?token=`. */
  function askToken(role, why = "") {
    const form = document.createElement("form");
    form.className = "token-form";
    form.innerHTML = `<h2>请输入设备令牌 · Device token</h2>
      <p class="why"></p>
      <input name="token" autocomplete="off" placeholder="${role} token" autofocus>
      <button type="submit">连接 · Connect</button>`;
    form.querySelector(".why").textContent = why;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = form.token.value.trim();
      if (!value) return;
      const next = new URLSearchParams(location.search);
      next.set("token", value);
      location.search = next.toString();
    });
    document.body.appendChild(form);
  }

  /** The hall layout: `?hall=URL`, else GET /api/hall when served over HTTP; null if unavailable. */
  async function loadHall() {
    const url = param("hall") || (location.protocol.startsWith("http") ? path("api/hall") : null);
    if (!url) return null;
    try {
      const response = await fetch(url, { cache: "no-store" });
      return response.ok ? await response.json() : null;
    } catch (_) {
      return null;
    }
  }

  function randomHex(bytes) {
    const data = new Uint8Array(bytes);
    crypto.getRandomValues(data);
    return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** An error answer of the server (or a request that could not be delivered). */
  class RequestFailed extends Error {
    constructor(code, message, details = {}) {
      super(`${code}: ${message}`);
      this.code = code;
      this.details = details;
      this.text = message;
    }
  }

  /**
   * One device's connection, re-established by itself.
   *
   * options: role, token, hello (extra hello fields: window, subscribe), and callbacks
   *   onWelcome(welcome), onPush(message), onStatus(state, detail) with state one of
   *   "connecting", "connected", "reconnecting", "stopped".
   */
  class Connection {
    constructor(options) {
      this.options = options;
      this.url = options.url || wsUrl();
      this.welcome = null;
      this.receivedAt = 0;        // Date.now()/1000 when welcome arrived
      this.connects = 0;          // welcomes received (1 = first connect)
      this.socket = null;
      this.nextId = 1;
      this.keyPrefix = randomHex(8);
      this.keyCount = 0;
      this.pending = new Map();   // id -> {message, resolve, reject, deadline}
      this.failures = 0;
      this.stopped = false;
      this.pingTimer = null;
      this.welcomed = false;      // the current socket got its welcome
      this.helloError = null;     // the error that answered our hello, if any
      this.retryTimer = null;     // the pending reconnect while backing off
    }

    start() {
      this._open();
      return this;
    }

    /** The hall clock now (POSIX seconds of the server clock), or null before welcome. */
    now() {
      if (!this.welcome) return null;
      return this.welcome.server_time + (Date.now() / 1000 - this.receivedAt) * (this.welcome.clock_speed || 1);
    }

    get timezone() {
      return (this.welcome && this.welcome.timezone) || undefined;
    }

    get connected() {
      return this.welcomed && this.socket !== null && this.socket.readyState === WebSocket.OPEN;
    }

    /**
     * Send a request; resolves with the `ok` result, rejects with RequestFailed.
     * Commands get an idempotency key; a request whose answer was lost is retried with it.
     */
    request(type, fields = {}) {
      const message = { type, ...fields, id: this.nextId++ };
      if (COMMANDS.has(type) && message.key === undefined) {
        message.key = `${this.keyPrefix}-${++this.keyCount}`;
      }
      return new Promise((resolve, reject) => {
        this.pending.set(message.id, { message, resolve, reject, deadline: Date.now() + RETRY_FOR_S * 1000 });
        if (this.connected) this._send(message);
      });
    }

    /**
     * Make sure the connection is alive now (the page became visible again, the network came
     * back): reconnect at once if down; if up, ping it and replace the socket when no answer
     * comes within `withinS` seconds. The new connection's welcome and first pushes re-sync
     * the page, like any reconnect.
     */
    revive(withinS = REVIVE_S) {
      if (this.stopped) return;
      if (this.retryTimer !== null) {  // waiting out a backoff: try now
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this._open();
        return;
      }
      if (!this.connected) return;  // a connection attempt is under way
      const socket = this.socket;
      const timer = setTimeout(() => {
        if (this.socket !== socket) return;
        socket.onclose = null;  // a dead socket may take minutes to report its close: drop it now
        socket.onmessage = null;
        try { socket.close(1000, "no answer"); } catch (_) { /* already closing */ }
        this._closed({ code: 1006 });
      }, withinS * 1000);
      this.request("ping").then(() => clearTimeout(timer), () => clearTimeout(timer));
    }

    stop() {
      this.stopped = true;
      if (this.socket) this.socket.close(1000, "page closed");
    }

    _status(state, detail = "") {
      if (this.options.onStatus) this.options.onStatus(state, detail);
    }

    _send(message) {
      try {
        this.socket.send(JSON.stringify(message));
      } catch (_) { /* the close handler resends it */ }
    }

    _open() {
      this.welcomed = false;
      this.helloError = null;
      this._status(this.connects ? "reconnecting" : "connecting");
      let socket;
      try {
        socket = new WebSocket(this.url, SUBPROTOCOL);
      } catch (error) {
        this._status("stopped", `bad server URL ${this.url}: ${error.message}`);
        return;
      }
      this.socket = socket;
      socket.onopen = () => {
        const hello = { type: "hello", role: this.options.role, token: this.options.token, ...(this.options.hello || {}) };
        socket.send(JSON.stringify(hello));
      };
      socket.onmessage = (event) => this._receive(event.data);
      socket.onclose = (event) => this._closed(event);
    }

    _receive(data) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (_) {
        return;
      }
      if (message.type === "welcome") {
        this.welcome = message;
        this.receivedAt = Date.now() / 1000;
        this.welcomed = true;
        this.failures = 0;
        this.connects += 1;
        const limits = message.limits || {};
        const pingS = limits.idle_timeout_s ? limits.idle_timeout_s / 3 : DEFAULT_PING_S;
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => { if (this.connected) this._send({ type: "ping" }); }, pingS * 1000);
        if (this.options.onWelcome) this.options.onWelcome(message);
        document.dispatchEvent(new CustomEvent("callsys-welcome", { detail: message }));
        this._status("connected");
        for (const entry of this.pending.values()) this._send(entry.message);  // resend after reconnecting
        return;
      }
      if ((message.type === "ok" || message.type === "error") && message.id !== undefined && this.pending.has(message.id)) {
        // `unavailable`: the server is stopping and did not execute it: sent again (same key)
        // once reconnected, like a request whose answer was lost
        if (message.type === "error" && message.code === "unavailable") return;
        const entry = this.pending.get(message.id);
        this.pending.delete(message.id);
        if (message.type === "ok") entry.resolve(message.result);
        else entry.reject(new RequestFailed(message.code, message.message, message.details));
        return;
      }
      if (message.type === "error" && !this.welcomed) {
        this.helloError = message;  // the close that follows says whether to retry
        return;
      }
      if (message.type === "ok" || message.type === "error") return;  // a ping's answer
      if (this.options.onPush) this.options.onPush(message);
    }

    _closed(event) {
      clearInterval(this.pingTimer);
      this.socket = null;
      this.welcomed = false;
      const now = Date.now();
      for (const [id, entry] of this.pending) {  // give up on requests retried for too long
        if (now > entry.deadline) {
          this.pending.delete(id);
          entry.reject(new RequestFailed("unavailable", "the server did not answer in time"));
        }
      }
      if (this.stopped) return;
      if (FINAL_CLOSES[event.code]) {
        const why = this.helloError ? `${this.helloError.code}: ${this.helloError.message}` : FINAL_CLOSES[event.code];
        for (const entry of this.pending.values()) entry.reject(new RequestFailed("closed", why));
        this.pending.clear();
        this.stopped = true;
        this._status("stopped", why);
        if (this.options.onFinalClose) this.options.onFinalClose(event.code, why);
        return;
      }
      const base = Math.min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** this.failures);
      const delay = base * (1 + JITTER * (2 * Math.random() - 1));
      this.failures += 1;
      this._status("reconnecting", `retry in ${delay.toFixed(1)} s`);
      this.retryTimer = setTimeout(() => { this.retryTimer = null; this._open(); }, delay * 1000);
    }
  }

  // ------------------------------------------------------------------ formatting

  /** `name` ({zh, en, ...}) in `lang`, falling back to zh then en. */
  function text(name, lang) {
    if (!name) return "";
    if (typeof name === "string") return name;
    return name[lang] || name.zh || name.en || "";
  }

  /** POSIX time `at` as hall time (HH:MM:SS, or with the date) in timezone `tz`. */
  function hallTime(at, tz, withDate = false) {
    if (at === null || at === undefined) return "";
    const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: tz };
    if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit", weekday: "short" });
    try {
      return new Intl.DateTimeFormat("zh-CN", options).format(new Date(at * 1000));
    } catch (_) {  // unknown timezone: UTC rather than the browser's zone
      return new Intl.DateTimeFormat("zh-CN", { ...options, timeZone: "UTC" }).format(new Date(at * 1000));
    }
  }

  /** An estimated wait for people: {zh: "约12分钟", en: "~12 min"}, or "-" when unknown. */
  function waitText(seconds) {
    if (seconds === null || seconds === undefined) return { zh: "—", en: "—" };
    const m = Math.max(1, Math.round(seconds / 60));
    return { zh: `约${m}分钟`, en: `~${m} min` };
  }

  /** A person's name as halls show it: first character and "*" (张三 -> 张*). */
  function maskName(name) {
    if (!name) return "";
    return `${Array.from(name)[0]}*`;
  }

  /** Show the hall's name from *welcome* in *node*: Chinese, then English beneath. */
  function showHallName(node, welcome) {
    const name = welcome.hall_name || {};
    node.textContent = name.zh || welcome.hall;
    node.appendChild(el("span", "en", name.en || ""));
  }

  /** Create an element with a class and text. */
  function el(tag, className = "", content = "") {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content) node.textContent = content;
    return node;
  }

  /** Show the connection state in the page's status badge (#conn). */
  function showStatus(state, detail) {
    const badge = document.getElementById("conn");
    if (!badge) return;
    const labels = {
      connecting: "连接中 · connecting", connected: "已连接 · online",
      reconnecting: "重新连接 · reconnecting", stopped: "已断开 · stopped",
    };
    badge.dataset.state = state;
    badge.textContent = labels[state] || state;
    badge.title = detail || "";
  }

  /** Keep the `.hall-clock` elements at the hall's time. */
  function runClock(conn, withDate = true) {
    const tick = () => {
      const now = conn.now();
      for (const node of document.querySelectorAll(".hall-clock")) {
        node.textContent = now === null ? "--:--:--" : hallTime(now, conn.timezone, withDate);
      }
    };
    tick();
    document.addEventListener("callsys-welcome", tick);
    setInterval(tick, 500);
  }

  /** Scale a fixed-size stage (e.g. 1920x1080) to fit the window. */
  function fitStage(stage, width, height) {
    const fit = () => {
      const scale = Math.min(window.innerWidth / width, window.innerHeight / height);
      stage.style.transform = `scale(${scale})`;
    };
    fit();
    window.addEventListener("resize", fit);
  }

  return {
    SUBPROTOCOL, COMMANDS, param, path, wsUrl, token, forgetToken, askToken, loadHall, Connection, RequestFailed,
    text, hallTime, waitText, maskName, el, showHallName, showStatus, runClock, fitStage,
  };
})();
