-- The permit cursor of each outbound rate limit (a connection's calls per second or per minute,
-- counted by every node): the window (unix ms, aligned to its period) whose permits are being
-- granted and how many of them are granted. A call takes the next permit in arrival order,
-- perhaps one of a later window, and waits (parked) until its window begins.
CREATE TABLE outbound_permits (
    bucket TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    granted BIGINT NOT NULL
);
