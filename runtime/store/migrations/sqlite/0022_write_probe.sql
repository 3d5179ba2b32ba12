-- One row that `/readyz` rewrites to prove a write commits (see `Store::ready`). Its `room`
-- twin is inserted and rolled back each time, so that a database at its size cap (or a full
-- disk) is noticed without leaving anything behind.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    room TEXT
);
INSERT INTO write_probe (id, at) VALUES (1, 0);
