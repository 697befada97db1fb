// The console's one way to the controller: its HTTP API, with the operator's token, as the CLI uses it.

const KEY = "bindwave.token";

/** An answer that is not a success: the API's status and its words. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The token this tab uses (kept for the tab's life only, never in a URL). */
export function token() {
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t.trim());
  else sessionStorage.removeItem(KEY);
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.error) || text || response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

/** GET a path of the API; its JSON. */
export async function get(path) {
  return answer(await fetch(path, { headers: headers() }));
}

/** POST JSON to a path of the API; its JSON. */
export async function post(path, body) {
  const init = { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  return answer(await fetch(path, init));
}

/**
 * Follows `/api/v1/events` (server-sent events, read with fetch so that the token goes in a header) and calls
 * `onChange` for each change; reconnects after a second when the stream ends. Returns a function that stops.
 */
export function follow(onChange, onState) {
  let stopped = false;
  let controller = null;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch("/api/v1/events", { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal });
        if (!response.ok) throw new ApiError(response.status, response.statusText);
        onState(true);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (block.split("\n").some((line) => line === "event: change")) onChange();
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      onState(false);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  run();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
