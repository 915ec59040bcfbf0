"""applied outbox rows kept for a while, to be applied again to a newly promoted Redis master

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No primary key: ids come from cache_outbox, and a row is only ever read by age.
    op.execute(
        """
        CREATE TABLE cache_outbox_applied (
            id bigint NOT NULL,
            table_name text NOT NULL,
            op text NOT NULL,
            old_row jsonb,
            new_row jsonb,
            applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute("CREATE INDEX cache_outbox_applied_at ON cache_outbox_applied (applied_at)")


def downgrade() -> None:
    op.execute("DROP TABLE cache_outbox_applied")
