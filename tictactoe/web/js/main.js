// The browser client: home (play, invite, watch), and one game's page (play, chat, watch, replay).
// Everything a person types or another player chose is put on the page as text (textContent).

import { ApiError, Unreachable, eventsAfter, get, pause, persistently, post } from "./api.js";
import { EMPTY, cellName, describe, evolve, nameOf, replay, winningLine } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const GAME_ID = "[A-Za-z0-9_-]{1,64}";
const LISTING_REFRESH_MS = 5000;

// --- what survives a reload: localStorage -------------------------------------------------------

const SESSION_KEY = "tictactoe.session";

function loadSession() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "{}") ?? {};
  } catch {
    saved = {};
  }
  if (typeof saved.client_id !== "string" || !/^[A-Za-z0-9_-]{16,64}$/.test(saved.client_id)) {
    // The server adopts an id the client brings: knowing it before the first answer means a
    // lost answer to /api/play cannot orphan the game.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    saved = { client_id: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("") };
  }
  return saved;
}

const session = loadSession();

function saveSession(changes) {
  Object.assign(session, changes);
  try {
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  } catch {
    // Storage refused (private browsing, quota): the page still works until it is closed.
  }
}

// --- connection indicator ------------------------------------------------------------------------

const unreachable = new Set();

function reachability(who) {
  return (ok) => {
    if (ok) unreachable.delete(who);
    else unreachable.add(who);
    $("connection").hidden = unreachable.size === 0;
  };
}

// --- routing ------------------------------------------------------------------------------------

let currentView = null; // {stop: AbortController} of the view on screen

function route() {
  currentView?.stop.abort();
  unreachable.clear();
  $("connection").hidden = true;
  const stop = new AbortController();
  currentView = { stop };
  const hash = location.hash;
  const game = hash.match(new RegExp(`^#/game/(${GAME_ID})$`));
  const join = hash.match(new RegExp(`^#/join/(${GAME_ID})$`));
  const run = game ? showGame(game[1], stop.signal) : showHome(join ? join[1] : null, stop.signal);
  run.catch((err) => {
    if (err?.name !== "AbortError") throw err;
  });
}

function show(viewId) {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== viewId;
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// --- home ---------------------------------------------------------------------------------------

function suggestedName() {
  return `Guest${Math.floor(1000 + Math.random() * 9000)}`;
}

async function showHome(inviteId, signal) {
  show("home");
  document.title = "Tic-tac-toe";
  const name = $("name");
  if (!name.value) name.value = session.name || suggestedName();
  $("start-error").hidden = true;
  $("start").dataset.invite = inviteId ?? "";
  $("invited").hidden = true;
  $("choices").classList.remove("secondary");
  const ongoing = session.game_id && !session.over;
  $("current").hidden = !ongoing;
  if (ongoing) $("current-link").href = `#/game/${session.game_id}`;
  if (inviteId) showInvitation(inviteId, signal);
  for (;;) {
    await refreshListing(signal);
    await pause(LISTING_REFRESH_MS, signal);
  }
}

async function showInvitation(gameId, signal) {
  try {
    const events = await eventsAfter(gameId, 0, { signal });
    const state = replay(events);
    if (state.started || state.over) {
      showStartError("That game has already started.", gameId);
      return;
    }
    $("inviter").textContent = state.players[0] ?? "A friend";
    $("invited").hidden = false;
    $("choices").classList.add("secondary");
  } catch (err) {
    if (err.name === "AbortError") return;
    showStartError(err instanceof ApiError ? "That invitation is not valid: no such game." : "The server cannot be reached.");
  }
}

function showStartError(message, watchId = null) {
  const box = $("start-error");
  box.replaceChildren(document.createTextNode(message));
  if (watchId) {
    const link = document.createElement("a");
    link.href = `#/game/${watchId}`;
    link.textContent = "Watch it";
    box.append(" ", link);
  }
  box.hidden = false;
}

async function refreshListing(signal) {
  try {
    const [live, finished] = await Promise.all([
      get("/api/games?state=playing&limit=20", { signal }),
      get("/api/games?state=over&limit=10", { signal }),
    ]);
    renderListing($("live"), $("live-empty"), live.body);
    renderListing($("finished"), $("finished-empty"), finished.body);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    // The listing is a convenience: keep the last one shown and try again later.
  }
}

function renderListing(list, empty, games) {
  list.replaceChildren(
    ...games.map((game) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `#/game/${game.game_id}`;
      const who = document.createElement("span");
      who.textContent = game.playerX && game.playerO ? `${game.playerX} vs ${game.playerO}` : game.players.join(" vs ");
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = game.state === "over" ? resultLabel(game) : `${game.moves} ${game.moves === 1 ? "move" : "moves"}`;
      link.append(who, meta);
      item.append(link);
      return item;
    }),
  );
  empty.hidden = games.length > 0;
}

function resultLabel(game) {
  if (game.result === "D") return "draw";
  if (game.result === "X" || game.result === "O") return `${nameOf(game, game.result) ?? game.result} won`;
  return "abandoned";
}

$("start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const invite = $("start").dataset.invite;
  // Enter in the name field submits with the form's first button, the hidden join one:
  // without an invitation, that means play someone.
  let how = event.submitter?.dataset.how ?? "match";
  if (how === "join" && !invite) how = "match";
  const params = { name: $("name").value.trim() };
  if (how === "bot") params.opponent = "bot";
  if (how === "private") params.private = true;
  if (how === "join") params.game_id = invite;
  await startGame(params, how, (message) => showStartError(message, how === "join" ? params.game_id : null));
});

async function startGame(params, how, onError) {
  const buttons = document.querySelectorAll("#start button, #actions button");
  for (const button of buttons) button.disabled = true;
  try {
    const { body } = await post("/api/play", { client_id: session.client_id, ...params });
    saveSession({ name: body.name, game_id: body.game_id, cursor: 0, over: false, how });
    go(`#/game/${body.game_id}`);
  } catch (err) {
    onError(err instanceof ApiError ? err.message : "The server cannot be reached: try again in a moment.");
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

// --- one game's page ----------------------------------------------------------------------------

let game = null; // the game on screen: {id, role, events, state, step, pending, signal}

async function showGame(gameId, signal) {
  show("game");
  game = {
    id: gameId,
    role: session.game_id === gameId ? "player" : "watcher",
    events: [],
    state: EMPTY,
    step: null, // the replay's step on screen; null follows the game live
    pending: null, // the cell of a move sent and not yet answered
    notice: null, // why the last command failed, shown until the next event
    signal,
  };
  $("log").replaceChildren();
  $("chat-error").hidden = true;
  buildBoard();
  render();
  const onReachable = reachability("game");
  try {
    const history = await persistently(() => eventsAfter(gameId, 0, { signal }), { signal, onReachable });
    history.forEach(apply);
    if (game.role === "player" && !game.state.over) await resume(signal, onReachable);
    await follow(signal, onReachable);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    $("status").textContent = err instanceof ApiError && err.code === 102 ? "There is no such game." : err.message;
    if (game.role === "player" && err.code === 102) saveSession({ game_id: null, over: true });
  }
}

async function resume(signal, onReachable) {
  try {
    const { body } = await persistently(() => post("/api/play", { client_id: session.client_id, resume: true }, { signal }), { signal, onReachable });
    saveSession({ name: body.name });
    if (body.game_id !== game.id) {
      // This client has moved on to another game (in another tab, say): that one is ours now.
      saveSession({ game_id: body.game_id, cursor: 0, over: false });
      go(`#/game/${body.game_id}`);
    }
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 110)) throw err; // 110: it ended meanwhile; the poll will tell
  }
}

async function follow(signal, onReachable) {
  // The long poll: ask for the event after the last one seen, for as long as the game goes on.
  while (!game.state.over) {
    const path = `/api/updates/${encodeURIComponent(game.id)}?cursor=${game.state.cursor}`;
    try {
      const { status, body } = await persistently(() => get(path, { signal }), { signal, onReachable });
      if (status === 200) apply(body);
    } catch (err) {
      if (err instanceof ApiError && err.code === 113) return; // over, and we have its last event
      throw err;
    }
  }
}

function apply(event) {
  if (event.cursor !== game.events.length + 1) return; // seen already (or a gap the next poll fills)
  game.events.push(event);
  game.state = evolve(game.state, event);
  game.notice = null;
  if (game.role === "player") saveSession({ cursor: game.state.cursor, over: game.state.over });
  render();
}

function myMark(state) {
  if (game.role !== "player") return null;
  if (state.playerX === session.name) return "X";
  if (state.playerO === session.name) return "O";
  return null;
}

function buildBoard() {
  const board = $("board");
  if (board.childElementCount) return;
  for (let position = 0; position < 9; position++) {
    const cell = document.createElement("button");
    cell.type = "button";
    cell.className = "cell";
    cell.dataset.position = String(position);
    cell.tabIndex = position === 4 ? 0 : -1;
    board.append(cell);
  }
}

function shown() {
  const live = game.step === null || game.step >= game.events.length;
  return { live, state: live ? game.state : replay(game.events, game.step) };
}

function render() {
  const { live, state } = shown();
  const mark = myMark(game.state);
  const opponent = mark ? nameOf(game.state, mark === "X" ? "O" : "X") : null;
  const canMove = live && mark !== null && game.state.started && !game.state.over && game.state.turn === mark && game.pending === null;

  $("game").dataset.role = game.role;
  $("game").dataset.mark = mark ?? "";
  $("game").dataset.over = String(game.state.over);
  $("players").textContent = playersLine(state, mark);
  // A past step is told as a watcher sees it: "Your turn" would invite a move that cannot be made.
  const status = live ? statusLine(state, mark, opponent) : `Replay: ${statusLine(state, null, null, "watcher")}`;
  $("status").textContent = game.notice ?? status;
  document.title = `${status} · Tic-tac-toe`;

  const line = state.over || state.winner ? winningLine(state.board) : null;
  for (const cell of $("board").children) {
    const position = Number(cell.dataset.position);
    const value = state.board[position];
    cell.textContent = value === "_" ? "" : value;
    cell.classList.toggle("x", value === "X");
    cell.classList.toggle("o", value === "O");
    cell.classList.toggle("win", line?.includes(position) ?? false);
    cell.classList.toggle("last", state.lastMove === position && !line);
    const playable = canMove && value === "_";
    cell.setAttribute("aria-disabled", String(!playable));
    cell.setAttribute("aria-label", `${cellName(position)}: ${value === "_" ? (playable ? "empty, play here" : "empty") : value}`);
  }

  const invite = game.role === "player" && game.state.private && !game.state.started && !game.state.over;
  $("invite").hidden = !invite;
  if (invite) $("invite-link").value = `${location.origin}${location.pathname}#/join/${game.id}`;
  $("again").hidden = !(game.role === "player" && game.state.over);
  $("leave").hidden = !(game.role === "player" && !game.state.over && game.events.length > 0);
  $("leave").textContent = game.state.started ? "Leave game" : "Stop waiting";

  const total = game.events.length;
  const step = live ? total : game.step;
  const slider = $("step");
  slider.max = String(total);
  slider.value = String(step);
  $("prev").disabled = step <= 0;
  $("next").disabled = step >= total;
  $("replay").classList.toggle("replaying", game.state.over);
  $("step-label").textContent =
    total === 0 ? "" : `${step === 0 ? "Before the first event" : `Step ${step} of ${total}: ${describe(game.events[step - 1])}`}${live && !game.state.over ? " (live)" : ""}`;

  renderLog(state.log);
  $("chat-form").hidden = !(game.role === "player" && !game.state.over);
}

function playersLine(state, mark) {
  const label = (m) => {
    const name = nameOf(state, m);
    return m === mark ? `You (${m})` : `${name} (${m})`;
  };
  if (state.started) return `${label("X")} vs ${label("O")}`;
  return state.players.join(" vs ");
}

function statusLine(state, mark, opponent, role = game.role) {
  if (state.over) {
    if (state.result === "D") return "Draw";
    if (state.result === "X" || state.result === "O") {
      const won = mark === state.result ? "You won!" : `${nameOf(state, state.result)} won`;
      return state.reason && !/ won$/.test(state.reason) ? `${won} (${state.reason})` : won;
    }
    return capitalise(state.reason ?? "The game was abandoned");
  }
  if (!state.started) {
    if (role !== "player") return "Waiting for a second player";
    return state.private ? "Waiting for your friend to join" : "Waiting for an opponent…";
  }
  if (mark) return state.turn === mark ? "Your turn" : `${opponent}'s turn`;
  return `${nameOf(state, state.turn)}'s turn (${state.turn})`;
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

let logLength = 0;

function renderLog(entries) {
  const log = $("log");
  log.replaceChildren(
    ...entries.map((entry) => {
      const item = document.createElement("li");
      item.className = entry.kind;
      if (entry.kind === "chat") {
        const who = document.createElement("strong");
        who.textContent = entry.name;
        item.append(who, document.createTextNode(` ${entry.text}`));
      } else {
        item.textContent = entry.text;
      }
      return item;
    }),
  );
  if (entries.length !== logLength) log.scrollTop = log.scrollHeight;
  logLength = entries.length;
}

// --- game page input ----------------------------------------------------------------------------

$("board").addEventListener("click", async (event) => {
  const cell = event.target.closest(".cell");
  if (!cell || cell.getAttribute("aria-disabled") === "true") return;
  const position = Number(cell.dataset.position);
  const current = game;
  current.pending = position;
  render();
  try {
    await post("/api/move", { client_id: session.client_id, position });
  } catch (err) {
    current.notice = err instanceof ApiError ? capitalise(err.message) : "Could not reach the server: try again.";
  } finally {
    current.pending = null;
    if (current === game) render();
  }
});

$("board").addEventListener("keydown", (event) => {
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -3, ArrowDown: 3 };
  if (!(event.key in moves)) return;
  const cell = event.target.closest(".cell");
  if (!cell) return;
  event.preventDefault();
  const from = Number(cell.dataset.position);
  const step = moves[event.key];
  let to = from + step;
  if (Math.abs(step) === 1 && Math.floor(to / 3) !== Math.floor(from / 3)) to = from; // stay in the row
  if (to < 0 || to > 8) to = from;
  const cells = $("board").children;
  for (const each of cells) each.tabIndex = -1;
  cells[to].tabIndex = 0;
  cells[to].focus();
});

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("message");
  const message = input.value;
  if (!message.trim()) return;
  $("chat-error").hidden = true;
  try {
    await post("/api/chat", { client_id: session.client_id, message });
    input.value = "";
  } catch (err) {
    $("chat-error").textContent = err instanceof ApiError ? capitalise(err.message) : "Could not reach the server: try again.";
    $("chat-error").hidden = false;
  }
});

$("again").addEventListener("click", () => {
  const params = { name: session.name };
  if (session.how === "bot") params.opponent = "bot";
  startGame(params, session.how === "bot" ? "bot" : "match", (message) => {
    game.notice = message;
    render();
  });
});

$("leave").addEventListener("click", async () => {
  try {
    await post("/api/quit", { client_id: session.client_id });
  } catch (err) {
    game.notice = err instanceof Unreachable ? "Could not reach the server: try again." : capitalise(err.message);
    render();
  }
});

$("copy").addEventListener("click", async () => {
  const input = $("invite-link");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select(); // no clipboard (plain http on a LAN): leave it selected for a long press
    return;
  }
  $("copy").textContent = "Copied";
});

function setStep(step) {
  game.step = Math.max(0, Math.min(step, game.events.length));
  render();
}

$("step").addEventListener("input", () => setStep(Number($("step").value)));
$("prev").addEventListener("click", () => setStep(shown().live ? game.events.length - 1 : game.step - 1));
$("next").addEventListener("click", () => setStep((shown().live ? game.events.length : game.step) + 1));

// --- start --------------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
if (!location.hash && session.game_id && !session.over) {
  history.replaceState(null, "", `#/game/${session.game_id}`); // a reload mid-game lands back in it
}
route();
