// The public protocol over fetch (docs/protocol.md), and patience when the server is unreachable.

/** The server answered with a protocol error: `{"error": {"code", "message"}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The server could not be reached (network down, server restarting, request timed out). */
export class Unreachable extends Error {}

// A long poll waits up to the server's poll_timeout (30 s by default); past this, the connection is presumed dead.
const REQUEST_TIMEOUT_MS = 75_000;

/** One request; resolves to {status, body} for 2xx, throws ApiError or Unreachable otherwise. */
export async function request(method, path, { params, signal } = {}) {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), REQUEST_TIMEOUT_MS);
  const onAbort = () => timeout.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const init = { method, signal: timeout.signal, cache: "no-store", headers: {} };
  if (params) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(params);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (signal?.aborted) throw abortError();
    throw new Unreachable(err.message);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  if (response.status === 204) return { status: 204, body: null };
  let body = null;
  try {
    body = await response.json();
  } catch {
    if (signal?.aborted) throw abortError();
    if (response.ok) throw new Unreachable("the answer was cut off");
  }
  if (response.ok) return { status: response.status, body };
  if (response.status >= 500 || !body?.error) {
    // 502/503 from a proxy or a database that is briefly unavailable: the same as unreachable.
    throw new Unreachable(`server answered ${response.status}`);
  }
  throw new ApiError(response.status, body.error.code, body.error.message);
}

export const post = (path, params, options = {}) => request("POST", path, { ...options, params });
export const get = (path, options = {}) => request("GET", path, options);

function abortError() {
  return new DOMException("aborted", "AbortError");
}

/** Sleep `ms`, cut short when the browser comes back online; rejects when `signal` aborts. */
export function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener("online", done);
      signal?.removeEventListener("abort", aborted);
      resolve();
    };
    const aborted = () => {
      done();
      reject(abortError());
    };
    const timer = setTimeout(done, ms);
    window.addEventListener("online", done);
    signal?.addEventListener("abort", aborted, { once: true });
    if (signal?.aborted) aborted();
  });
}

/**
 * Call `attempt()` until it does not throw Unreachable, waiting longer each time (0.5 s doubling
 * to 8 s, with jitter). `onReachable(false)` is called when a try fails, `onReachable(true)` when
 * one succeeds after that. Protocol errors (ApiError) and aborts pass through.
 */
export async function persistently(attempt, { signal, onReachable }) {
  let delay = 500;
  let failed = false;
  for (;;) {
    try {
      const result = await attempt();
      if (failed) onReachable?.(true);
      return result;
    } catch (err) {
      if (!(err instanceof Unreachable) || signal?.aborted) throw err;
      failed = true;
      onReachable?.(false);
      await pause(delay * (0.75 + Math.random() / 2), signal);
      delay = Math.min(delay * 2, 8000);
    }
  }
}

/** All events of a game after cursor `after`, in pages of up to 100 (the events endpoint). */
export async function eventsAfter(gameId, after, options) {
  const all = [];
  for (;;) {
    const { body } = await get(`/api/games/${encodeURIComponent(gameId)}/events?after=${after + all.length}`, options);
    all.push(...body);
    if (body.length < 100) return all;
  }
}
