// wsfast chat page: plain JavaScript, no build step. User text goes to the
// DOM with textContent only (never innerHTML), so it is never parsed as HTML.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var log = $("log"), statusLine = $("status"), members = $("members");
  var textInput = $("text"), sendButton = $("send");
  var ws = null;
  var wanted = null;        // {nick, room}: what to (re)join after connecting
  var joined = null;        // the welcome of the current room
  var early = [];           // events that arrived before the welcome
  var seen = new Set();     // event ids shown (history and live may overlap)
  var here = new Map();     // nick -> count of connections in the room
  var attempt = 0, retryTimer = null, countdown = null;
  var shownRoom = null;     // the room whose conversation the log holds
  var serverClose = null;   // "1001 server shutting down": the server's last close, kept while retrying
  var FATAL = { 1003: 1, 1007: 1, 1008: 1, 1009: 1, 4000: 1 };  // the server refused us: no automatic retry
  // This page's claim on its nick: after a reconnect, the server gives the
  // nick back to the page that sends the same claim, and to no other page.
  var claim = (function () {
    var a = new Uint8Array(16);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  })();

  function setStatus(text, cls) { statusLine.textContent = text; statusLine.className = cls; }

  function time(ts) {
    var d = new Date(ts * 1000);
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }

  function line(cls) {
    var li = document.createElement("li");
    if (cls) li.className = cls;
    return li;
  }

  function append(li, ts) {
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    // Events go in time order: history merged after a reconnect may hold
    // what was said while this page was away, older than what it shows.
    var before = null;
    if (ts !== undefined) {
      li.dataset.ts = ts;
      for (var node = log.lastElementChild; node && node.dataset.ts !== undefined && +node.dataset.ts > ts;
           node = node.previousElementSibling) before = node;
    }
    log.insertBefore(li, before);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function note(text, cls) {
    var li = line(cls || "info");
    li.textContent = text;
    append(li);
  }

  function showEvent(ev) {
    if (ev.id) {
      if (seen.has(ev.id)) return;
      seen.add(ev.id);
    }
    var li;
    if (ev.type === "msg") {
      li = line(joined && ev.nick === joined.nick ? "msg mine" : "msg");
      var t = document.createElement("span"); t.className = "time"; t.textContent = time(ev.ts);
      var n = document.createElement("span"); n.className = "nick"; n.textContent = ev.nick;
      var body = document.createElement("span"); body.className = "text"; body.textContent = ev.text;
      li.appendChild(t); li.appendChild(n); li.appendChild(body);
    } else {
      li = line("info");
      li.textContent = ev.nick + (ev.type === "join" ? " joined" : " left") + " #" + ev.room;
    }
    li.dataset.id = ev.id || "";
    append(li, ev.ts);
  }

  function renderMembers() {
    members.replaceChildren();
    members.classList.remove("stale");
    var names = Array.from(here.keys()).sort(function (a, b) { return a.toLowerCase() < b.toLowerCase() ? -1 : 1; });
    names.forEach(function (nick) {
      var li = document.createElement("li");
      li.textContent = nick + (here.get(nick) > 1 ? " (×" + here.get(nick) + ")" : "");
      members.appendChild(li);
    });
    $("count").textContent = "(" + names.length + ")";
  }

  function presence(ev) {
    var n = here.get(ev.nick) || 0;
    if (ev.type === "join") here.set(ev.nick, n + 1);
    else if (n > 1) here.set(ev.nick, n - 1);
    else here.delete(ev.nick);
    renderMembers();
  }

  function welcome(w) {
    joined = w;
    serverClose = null;
    if (shownRoom !== w.room) {  // another room: another conversation
      log.replaceChildren();
      seen.clear();
      shownRoom = w.room;
    }  // the same room again (a reconnect): keep what is shown, add what was missed
    $("room-title").textContent = "#" + w.room + " — you are " + w.nick;
    document.title = "#" + w.room + " · wsfast chat";
    w.history.forEach(showEvent);
    here = new Map();
    w.members.forEach(function (nick) { here.set(nick, (here.get(nick) || 0) + 1); });
    renderMembers();
    var held = early; early = [];
    held.forEach(function (ev) {
      if (ev.room !== w.room) return;
      if (!seen.has(ev.id) && ev.type !== "msg" && ev.nick !== w.nick) presence(ev);
      showEvent(ev);
    });
    textInput.disabled = sendButton.disabled = false;
    textInput.placeholder = "Message #" + w.room + " (Enter to send)";
    textInput.focus();
    attempt = 0;
    setStatus("connected · #" + w.room, "open");
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "welcome": return welcome(ev);
      case "error": return note("⚠ " + ev.error, "error");
      case "msg": case "join": case "leave":
        if (!joined || ev.room !== joined.room) { early.push(ev); return; }
        if (ev.type !== "msg" && !seen.has(ev.id)) presence(ev);
        return showEvent(ev);
    }
  }

  function sendJoin() {
    if (wanted && ws && ws.readyState === WebSocket.OPEN) {
      joined = null; early = [];
      ws.send(JSON.stringify({ type: "join", nick: wanted.nick, room: wanted.room, claim: claim }));
    }
  }

  function connect() {
    clearTimeout(retryTimer); clearInterval(countdown);
    // While retrying, the server's own last close stays on show (the
    // retries' 1006 says nothing about why the server went).
    setStatus(attempt ? "reconnecting…" + (serverClose ? " (server closed: " + serverClose + ")" : "")
                      : "connecting…", "connecting");
    // Relative to the page, so the chat also works under a proxy's path
    // prefix (location /chat-app/ { proxy_pass http://backend/; }).
    var url = new URL("chat", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    ws = new WebSocket(url.href);
    ws.onopen = function () {
      setStatus(wanted ? "connected, joining…" : "connected · choose a nick", "open");
      sendJoin();
    };
    ws.onmessage = function (event) {
      var ev;
      try { ev = JSON.parse(event.data); } catch (e) { return; }
      onEvent(ev);
    };
    ws.onclose = function (event) {
      joined = null;
      textInput.disabled = sendButton.disabled = true;
      // Who is here is unknown while disconnected: the list says so, the
      // next welcome fills it again.
      here = new Map();
      renderMembers();
      members.classList.add("stale");
      $("count").textContent = "(disconnected)";
      var why = "code " + event.code + (event.reason ? ": " + event.reason : "");
      // A retry that finds no server fails with 1006; the reason worth
      // showing is what the server said when it closed (1001 server
      // shutting down), so keep that one until the next welcome.
      if (event.code !== 1006) serverClose = why;
      else if (serverClose) why = serverClose + "; retry: code 1006";
      if (FATAL[event.code]) {
        setStatus("closed by the server (" + why + ")", "closed");
        note("The server closed the connection (" + why + "). Press Join to reconnect.", "error");
        ws = null;
        return;
      }
      // Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... at most 10 s.
      var delay = Math.min(10000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
      attempt++;
      var until = Date.now() + delay;
      var tick = function () {
        setStatus("disconnected (" + why + ") · reconnecting in " + Math.ceil((until - Date.now()) / 1000) + " s", "closed");
      };
      tick();
      countdown = setInterval(tick, 250);
      retryTimer = setTimeout(connect, delay);
    };
  }

  $("join").onsubmit = function (event) {
    event.preventDefault();
    var nick = $("nick").value.trim(), room = $("room").value.trim();
    if (!nick || !room) return;
    wanted = { nick: nick, room: room };
    try { sessionStorage.setItem("wsfast-chat", JSON.stringify(wanted)); } catch (e) {}
    if (location.hash !== "#" + room) history.replaceState(null, "", "#" + room);
    if (ws && ws.readyState === WebSocket.OPEN) sendJoin();
    else if (!ws || ws.readyState === WebSocket.CLOSED) { attempt = 0; connect(); }
  };

  $("say").onsubmit = function (event) {
    event.preventDefault();
    var text = textInput.value;
    if (!text.trim() || !joined || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "msg", text: text }));
    textInput.value = "";
  };

  try {
    var saved = JSON.parse(sessionStorage.getItem("wsfast-chat") || "null");
    if (saved && saved.nick) { $("nick").value = saved.nick; $("room").value = saved.room; wanted = saved; }
  } catch (e) {}
  if (location.hash.length > 1) {
    $("room").value = decodeURIComponent(location.hash.slice(1));
    if (wanted) wanted.room = $("room").value;
  }
  connect();
})();
