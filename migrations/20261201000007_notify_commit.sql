-- notify: a commit point before the end of the data. `committing`: marked after the server
-- answered DATA with 354 and before the message and its end-of-data marker are written.
-- `unconfirmed`: found `committing` by a later attempt, or no reply came after the marker:
-- the server may have the message, and it is never sent again. `sending` is kept for rows
-- written before this version (such a message is sent again, as it was).

ALTER TABLE notify_deliveries DROP CONSTRAINT notify_deliveries_state_check;
ALTER TABLE notify_deliveries ADD CONSTRAINT notify_deliveries_state_check
    CHECK (state IN ('queued', 'sending', 'committing', 'sent', 'failed', 'unconfirmed'));
