-- Index only the joins by actor, not every event: the old index took an entry (a random page,
-- since an actor is a hash) for every event appended, moves included. A client's last game is
-- the game of its last join (see EventStore.last_game_of), so the joins are all it needs.
DROP INDEX events_by_actor;
CREATE INDEX events_joins_by_actor ON events (actor) WHERE type = 'connect' AND actor IS NOT NULL;
