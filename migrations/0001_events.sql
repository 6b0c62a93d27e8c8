-- The event log: the only truth. One row per event, numbered per game by `cursor`.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,                -- position in the whole log
    game_id    TEXT    NOT NULL,
    cursor     INTEGER NOT NULL CHECK (cursor >= 1), -- position in the game's timeline
    type       TEXT    NOT NULL CHECK (type IN ('connect', 'status', 'move', 'chat', 'disconnect', 'end')),
    data       TEXT    NOT NULL,                   -- the public event JSON, as sent to clients
    actor      TEXT,                               -- SHA-256 of the acting client's id; never sent
    created_at TEXT    NOT NULL,
    UNIQUE (game_id, cursor)                       -- a lost race fails loudly
);

-- Finds a client's last game when it comes back after its game ended (or after a restart).
CREATE INDEX events_by_actor ON events (actor) WHERE actor IS NOT NULL;

-- Read model, written in the same transaction as the events and rebuildable from them alone:
-- one row per game, so that start-up finds the unfinished games without reading the log.
CREATE TABLE games (
    game_id     TEXT    PRIMARY KEY,
    state       TEXT    NOT NULL CHECK (state IN ('waiting', 'playing', 'over')),
    players     TEXT    NOT NULL,                  -- JSON array of the players' names, in join order
    private     INTEGER NOT NULL,                  -- 1: never offered to matchmaking nor listed
    player_x    TEXT,
    player_o    TEXT,
    moves       INTEGER NOT NULL,
    result      TEXT,
    last_cursor INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE INDEX games_unfinished ON games (created_at) WHERE state != 'over';
CREATE INDEX games_newest ON games (private, created_at);
CREATE INDEX games_newest_by_state ON games (state, private, created_at);
