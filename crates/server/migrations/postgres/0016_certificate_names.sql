-- The inventory's name index (docs/console.md): one row per identifier of each
-- certificate, so that a name search is an index lookup rather than a filter on an expiry
-- walk. DNS names are stored lower-case with their labels reversed (`www.example.com` ->
-- `com.example.www`, `*.example.com` -> `com.example.*`), so that every name under a
-- suffix is one key range (`com.example.` up to `com.example/`); IP addresses as written.
-- The key ends with (not_after, serial), so that one name's certificates come in the
-- inventory's keyset order. `name` compares bytewise (COLLATE "C"): a linguistic
-- collation would not keep a suffix's names in one range. Derived from
-- certificates.names, written in the transaction that stores the certificate; `import`
-- rebuilds it.
CREATE TABLE certificate_names (
    kind      TEXT   NOT NULL,
    name      TEXT   COLLATE "C" NOT NULL,
    not_after BIGINT NOT NULL,
    serial    TEXT   NOT NULL,
    PRIMARY KEY (kind, name, not_after, serial)
);

-- The certificates stored before this migration.
INSERT INTO certificate_names (kind, name, not_after, serial)
SELECT DISTINCT i ->> 'type',
       CASE WHEN i ->> 'type' = 'dns' THEN
           array_to_string(ARRAY(
               SELECT l FROM unnest(string_to_array(lower(i ->> 'value'), '.'))
                   WITH ORDINALITY AS t(l, n)
               ORDER BY n DESC), '.')
       ELSE lower(i ->> 'value') END,
       c.not_after, c.serial
FROM certificates c, jsonb_array_elements(c.names::jsonb) AS i;
