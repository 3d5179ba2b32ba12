-- Whether the window running when a limit's latest permit was taken still had permits left
-- (1) or not (0): a call asking in the last part of a window that has room starts at once on
-- the next window's permit. Written by the same statement that moves the cursor, under its
-- row lock, so concurrent callers on any node see it exactly.
ALTER TABLE outbound_permits ADD COLUMN room_before BIGINT NOT NULL DEFAULT 1;
