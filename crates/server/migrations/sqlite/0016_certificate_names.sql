-- The inventory's name index (docs/console.md): one row per identifier of each
-- certificate, so that a name search is an index lookup rather than a filter on an expiry
-- walk. DNS names are stored lower-case with their labels reversed (`www.example.com` ->
-- `com.example.www`, `*.example.com` -> `com.example.*`), so that every name under a
-- suffix is one key range (`com.example.` up to `com.example/`); IP addresses as written.
-- The key ends with (not_after, serial), so that one name's certificates come in the
-- inventory's keyset order. Derived from certificates.names, written in the transaction
-- that stores the certificate; `import` rebuilds it.
CREATE TABLE certificate_names (
    kind      TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    not_after INTEGER NOT NULL,
    serial    TEXT    NOT NULL,
    PRIMARY KEY (kind, name, not_after, serial)
) WITHOUT ROWID;

-- The certificates stored before this migration. SQLite has no function that reverses
-- labels: a recursive CTE moves one label at a time from `rest` to the front of `acc`.
INSERT OR IGNORE INTO certificate_names (kind, name, not_after, serial)
WITH RECURSIVE ids(serial, not_after, kind, value) AS (
    SELECT c.serial, c.not_after, json_extract(j.value, '$.type'),
           lower(json_extract(j.value, '$.value'))
    FROM certificates c, json_each(c.names) j
),
labels(serial, not_after, rest, acc) AS (
    SELECT serial, not_after, value || '.', NULL FROM ids WHERE kind = 'dns'
    UNION ALL
    SELECT serial, not_after, substr(rest, instr(rest, '.') + 1),
           substr(rest, 1, instr(rest, '.') - 1) || COALESCE('.' || acc, '')
    FROM labels WHERE rest <> ''
)
SELECT 'dns', acc, not_after, serial FROM labels WHERE rest = ''
UNION ALL
SELECT kind, value, not_after, serial FROM ids WHERE kind <> 'dns';
