-- Sketch unions for groups of a few rows (issue #14): an hour row merges the minute rows of
-- its dimension values, six on average. postgresql-hll's hll_union_agg and the extension's
-- tdigest(tdigest) keep an unpacked state per group (~100 KB and ~80 KB), allocated and
-- cleared for every group whatever its size: merging an hour's minute rows spent most of its
-- time there. These fold the rows with the libraries' own pairwise unions (hll_union,
-- tdigest_union): the same sketches, a few microseconds a row. For groups of hundreds of
-- full sketches (the totals) the unpacked state is cheaper and stays.
CREATE AGGREGATE hll_merge(hll) (
    SFUNC = hll_union,
    STYPE = hll,
    COMBINEFUNC = hll_union,
    PARALLEL = SAFE
);
CREATE FUNCTION tdigest_merge_step(tdigest, tdigest) RETURNS tdigest
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS 'SELECT tdigest_union($1, $2)';
CREATE AGGREGATE tdigest_merge(tdigest) (
    SFUNC = tdigest_merge_step,
    STYPE = tdigest,
    COMBINEFUNC = tdigest_merge_step,
    PARALLEL = SAFE
);
