-- The estimated distinct count of a union of HyperLogLog sketches, in one aggregate:
-- postgresql-hll's own union transition and its cardinality of the unpacked union
-- (hll_card_unpacked). hll_cardinality(hll_union_agg(x)) computes the same number but packs
-- the union into an hll value and unpacks it again, ~50 µs per group of full sketches: a
-- 30-second series of an hour per OS has 700 groups. Parallel like hll_union_agg.
CREATE AGGREGATE hll_union_cardinality(hll) (
    SFUNC = hll_union_trans,
    STYPE = internal,
    FINALFUNC = hll_card_unpacked,
    COMBINEFUNC = hll_union_internal,
    SERIALFUNC = hll_serialize,
    DESERIALFUNC = hll_deserialize,
    PARALLEL = SAFE
);
