-- name: rearm
-- Arm a finished delivery for another round (`dlq replay`, `deliveries resend`): a fresh
-- attempt budget and age, the same event (so the same `webhook-id`, guarantee 5), a new
-- message id (any older message finds nothing), and the trigger its next attempt records.
-- The SET list of an UPDATE of webhooks.deliveries d.
    status = 'pending', spent = 0, budget_started_at = now(), dead_reason = null,
    finished_at = null, locked_until = null, next_trigger = %(trigger)s::text,
    message_id = gen_random_uuid(),
    next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now();

-- name: mark_replayed
-- Mark a dead letter as brought back, appending to its history who did it, when, and how
-- (`replay` or `resend`). The SET list of an UPDATE of webhooks.dead_letters dl.
    replayed_at = now(), replay_count = dl.replay_count + 1,
    replays = dl.replays || jsonb_build_array(jsonb_build_object(
        'at', now(), 'by', %(by)s::text, 'attempts_before', dl.attempts,
        'trigger', %(trigger)s::text));
