-- Attempts made by `webhooks deliveries resend` (a finished delivery sent again) and by
-- `webhooks endpoint test` (a test event sent to one endpoint now) say so in their trigger.
-- The new check only widens the old one, so every existing row passes it; NOT VALID skips
-- re-reading the whole attempts table under this migration's lock, new rows are checked.
alter table webhooks.attempts drop constraint attempts_trigger_check;
alter table webhooks.attempts add constraint attempts_trigger_check
    check (trigger in ('scheduled', 'replay', 'resend', 'test')) not valid;

-- An event addressed to one endpoint only (a test event): its delivery is made with it, the
-- relay never fans it out to the tenant's other endpoints, and `webhooks check` does not
-- count their missing deliveries. Null for every published event. No default: adding the
-- column rewrites nothing.
alter table webhooks.outbox add column endpoint_id uuid;
