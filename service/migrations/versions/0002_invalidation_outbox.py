"""invalidation outbox: triggers record every row change and NOTIFY

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("articles", "authors", "categories", "tags", "article_tags", "comments")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE cache_outbox (
            id bigserial PRIMARY KEY,
            table_name text NOT NULL,
            op text NOT NULL,
            old_row jsonb,
            new_row jsonb,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    # Row images without the large columns; an article also carries its tag ids, which a
    # change of its visibility changes the counts of.
    op.execute(
        """
        CREATE FUNCTION cache_outbox_record() RETURNS trigger LANGUAGE plpgsql AS $$
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
            PERFORM pg_notify('cache_outbox', '');
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER cache_outbox_row AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION cache_outbox_record()"
        )
        op.execute(
            f"CREATE TRIGGER cache_outbox_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION cache_outbox_record()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER cache_outbox_truncate ON {table}")
        op.execute(f"DROP TRIGGER cache_outbox_row ON {table}")
    op.execute("DROP FUNCTION cache_outbox_record()")
    op.execute("DROP TABLE cache_outbox")
