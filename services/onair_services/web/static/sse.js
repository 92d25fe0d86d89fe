// Server-Sent Events over fetch: for streams that need the Authorization header, which
// EventSource cannot send (the user's own notifications). Parses the text/event-stream format,
// reconnects with Last-Event-ID, and asks for a fresh token before each connection.

import { accessToken, refresh } from "./api.js";

/**
 * Read `url` as an event stream. onEvent({event, data, id}) per event. Returns {close()}.
 * The stream reconnects after errors (backoff up to 15 s) until closed or no longer signed in.
 */
export function authorizedStream(url, { onEvent, onState = () => {} }) {
  const control = { closed: false, abort: null };
  let lastId = null;
  let delay = 1000;

  async function connect() {
    while (!control.closed) {
      const token = accessToken();
      if (!token) {
        onState("signed-out");
        return;
      }
      const abort = new AbortController();
      control.abort = abort;
      try {
        const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const resp = await fetch(url, { headers, signal: abort.signal, cache: "no-store" });
        if (resp.status === 401) {
          if (!(await refresh())) return onState("signed-out");
          continue;
        }
        if (!resp.ok || !resp.body) throw new Error(`stream answered ${resp.status}`);
        onState("open");
        delay = 1000;
        await read(resp.body, (ev) => {
          if (ev.id !== null) lastId = ev.id;
          onEvent(ev);
        });
      } catch (err) {
        if (control.closed) return;
        onState("retrying");
      }
      if (control.closed) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  connect();
  return {
    close() {
      control.closed = true;
      if (control.abort) control.abort.abort();
    },
  };
}

async function read(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  let event = "message";
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (data.length) dispatch({ event, data: data.join("\n"), id });
        data = [];
        event = "message";
        continue;
      }
      if (line.startsWith(":")) continue; // a comment (heartbeat)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") data.push(val);
      else if (field === "event") event = val;
      else if (field === "id") id = val;
    }
  }
}
