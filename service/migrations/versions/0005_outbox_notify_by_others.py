"""outbox triggers NOTIFY only for sessions that do not invalidate their own writes

A session started with ``content.outbox_notify=off`` (the service's request pool, whose writes
invalidate the cache themselves after their commit) still records every row change in the
outbox, but wakes no relay: the relays' periodic drains apply its rows. Every other session
(psql, another program) notifies as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The row images of 0002; only the notification differs.
_RECORD = """
CREATE OR REPLACE FUNCTION cache_outbox_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO cache_outbox (table_name, op) VALUES (TG_TABLE_NAME, TG_OP);
    ELSE
        IF TG_OP <> 'INSERT' THEN
            old_row := to_jsonb(OLD) - 'body' - 'search_vector';
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_row := to_jsonb(NEW) - 'body' - 'search_vector';
        END IF;
        IF TG_TABLE_NAME = 'articles' THEN
            new_row := new_row || jsonb_build_object('tag_ids', (
                SELECT coalesce(jsonb_agg(tag_id), '[]'::jsonb)
                FROM article_tags WHERE article_id = coalesce(NEW.id, OLD.id)));
        END IF;
        INSERT INTO cache_outbox (table_name, op, old_row, new_row)
        VALUES (TG_TABLE_NAME, TG_OP, old_row, new_row);
    END IF;
    {notify}
    RETURN NULL;
END
$$
"""

_NOTIFY = "PERFORM pg_notify('cache_outbox', '');"
_NOTIFY_UNLESS_OFF = (
    "IF coalesce(current_setting('content.outbox_notify', true), 'on') <> 'off' THEN\n"
    f"        {_NOTIFY}\n"
    "    END IF;"
)


def upgrade() -> None:
    op.execute(_RECORD.format(notify=_NOTIFY_UNLESS_OFF))


def downgrade() -> None:
    op.execute(_RECORD.format(notify=_NOTIFY))
