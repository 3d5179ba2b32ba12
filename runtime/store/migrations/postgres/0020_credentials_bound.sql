-- The sha256 of the connector component a connection's credentials were given with ('' when it
-- has none, or for connections saved before the binding): calls run that component while the
-- pin admits it, and no other one receives the credentials until they are sent again.
ALTER TABLE connections ADD COLUMN credentials_for TEXT NOT NULL DEFAULT '';
