"""The FastAPI chat of docs/asgi.md: every text message goes to everyone in
the room, with the sender's name. Run it with wsfast under uvicorn:

    python -m wsfast asgi tests.asgi_chat_app:app --port 8000
    # the same as: uvicorn tests.asgi_chat_app:app --ws wsfast.asgi:WSFastProtocol --port 8000

then open http://127.0.0.1:8000/ in two browser tabs.
"""

from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse

app = FastAPI()
rooms: dict = {}  # room name -> set of WebSocket

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>chat</title></head>
<body>
<div id="status">connecting</div>
<form id="form"><input id="text" autocomplete="off"><button>send</button></form>
<ul id="log"></ul>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby", name = params.get("name") || "guest";
const ws = new WebSocket(`ws://${location.host}/ws/${room}?name=${encodeURIComponent(name)}`);
window.ws = ws;
ws.onopen = () => { document.getElementById("status").textContent = "open"; };
ws.onclose = (e) => { document.getElementById("status").textContent = "closed " + e.code; };
ws.onmessage = (e) => {
  const li = document.createElement("li");
  li.textContent = e.data;
  document.getElementById("log").appendChild(li);
};
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  ws.send(input.value);
  input.value = "";
};
</script>
</body></html>
"""


@app.get("/")
async def page():
    return HTMLResponse(PAGE)


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str, name: str = "guest"):
    await websocket.accept()
    members = rooms.setdefault(room, set())
    members.add(websocket)
    try:
        await broadcast(room, f"* {name} joined")
        async for text in websocket.iter_text():  # ends when the client leaves
            await broadcast(room, f"{name}: {text}")
    finally:
        members.discard(websocket)
        await broadcast(room, f"* {name} left")


async def broadcast(room, text):
    for member in list(rooms.get(room, ())):
        try:
            await member.send_text(text)
        except Exception:  # gone meanwhile (WebSocketDisconnect, or closed): its task cleans up
            pass
