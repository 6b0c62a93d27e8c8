// The game as a fold over its events: the same idea as the server's rules.replay, in the browser.
// Pure functions only: no DOM, no network.

export const LINES = [
  [0, 1, 2], [3, 4, 5], [6, 7, 8],
  [0, 3, 6], [1, 4, 7], [2, 5, 8],
  [0, 4, 8], [2, 4, 6],
];

export const EMPTY = Object.freeze({
  cursor: 0,
  board: "_________",
  turn: null,
  playerX: null,
  playerO: null,
  players: [],
  private: false,
  started: false,
  over: false,
  winner: null,
  result: null,
  reason: null,
  lastMove: null,
  left: [],
  log: [], // chat lines and notices, in order: {kind: "chat"|"notice", name?, text, cursor}
});

/** The state after `event`; an event that is not the next one (a repeat, a gap) changes nothing. */
export function evolve(state, event) {
  if (event.cursor !== state.cursor + 1) return state;
  const next = { ...state, cursor: event.cursor };
  switch (event.type) {
    case "connect":
      return {
        ...next,
        players: [...state.players, event.name],
        private: state.private || event.private === true,
        log: [...state.log, { kind: "notice", text: `${event.name} joined`, cursor: event.cursor }],
      };
    case "status":
      return { ...next, started: true, board: event.board, turn: event.turn, playerX: event.playerX, playerO: event.playerO };
    case "move":
      return {
        ...next,
        board: event.board,
        turn: event.turn ?? null,
        winner: event.winner ?? null,
        lastMove: event.position,
      };
    case "chat":
      return { ...next, log: [...state.log, { kind: "chat", name: event.name, text: event.message, cursor: event.cursor }] };
    case "disconnect":
      return {
        ...next,
        left: [...state.left, event.name],
        log: [...state.log, { kind: "notice", text: `${event.name} left the game`, cursor: event.cursor }],
      };
    case "end":
      return {
        ...next,
        over: true,
        turn: null,
        result: event.result,
        reason: event.reason,
        log: [...state.log, { kind: "notice", text: `Game over: ${event.reason}`, cursor: event.cursor }],
      };
    default:
      return next; // a type this client does not know: skip it, keep counting
  }
}

/** The state after the first `upTo` events (all of them by default). */
export function replay(events, upTo = events.length) {
  return events.slice(0, upTo).reduce(evolve, EMPTY);
}

/** The three cells of the line that won on `board`, or null. */
export function winningLine(board) {
  return LINES.find(([a, b, c]) => board[a] !== "_" && board[a] === board[b] && board[a] === board[c]) ?? null;
}

/** The name that plays `mark` in `state`. */
export function nameOf(state, mark) {
  return mark === "X" ? state.playerX : mark === "O" ? state.playerO : null;
}

const CELL_NAMES = [
  "top left", "top middle", "top right",
  "middle left", "centre", "middle right",
  "bottom left", "bottom middle", "bottom right",
];

/** A cell for people: "centre", "top left", ... */
export function cellName(position) {
  return CELL_NAMES[position] ?? `cell ${position}`;
}

/** One line that says what event `event` did, for the replay's step label. */
export function describe(event) {
  switch (event.type) {
    case "connect":
      return `${event.name} joined`;
    case "status":
      return `The game starts: ${event.playerX} plays X, ${event.playerO} plays O`;
    case "move":
      return `${event.player} took the ${cellName(event.position)}`;
    case "chat":
      return `${event.name}: ${event.message}`;
    case "disconnect":
      return `${event.name} left`;
    case "end":
      return `Game over: ${event.reason}`;
    default:
      return event.type;
  }
}
