-- Which versions of its plugin a connection uses: an exact version or a semver range. '' (rows
-- stored before pinning) is pinned to the then newest version when a node starts.
ALTER TABLE connections ADD COLUMN plugin_version TEXT NOT NULL DEFAULT '';
