-- Payload filters and subscription patterns on endpoints.
--
-- `filter` is the filter as the operator wrote it (worker.policy.filters), shown back as is;
-- `filter_path` and `filter_vars` are its compiled SQL/JSON path predicate and the operands
-- it reads, which the relay's fan-out evaluates with jsonb_path_match (so a filtered-out
-- event creates no delivery). The three are written together by the endpoint service, or
-- are all null (no filter).
--
-- `event_type_regex` is set when `event_types` holds a pattern (`order.*`, `*`): the
-- alternation of producers.names.pattern_regex of every entry, the same text Python's `re`
-- reads, matched with `~`. Null when every entry is a plain event type.
alter table webhooks.endpoints
    add column filter jsonb,
    add column filter_path jsonpath,
    add column filter_vars jsonb,
    add column event_type_regex text,
    add constraint endpoints_filter_compiled
        check ((filter is null) = (filter_path is null) and (filter is null) = (filter_vars is null));
