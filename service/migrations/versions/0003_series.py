"""series: ordered collections of articles

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("slug", name=op.f("uq_series_slug")),
    )
    op.add_column("articles", sa.Column("series_id", sa.BigInteger(), nullable=True))
    op.add_column("articles", sa.Column("series_position", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_articles_series_id_series"),
        "articles",
        "series",
        ["series_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_articles_series_id_series_position",
        "articles",
        ["series_id", "series_position"],
    )
    # Changes made by any SQL are recorded in the invalidation outbox, as for the other tables.
    op.execute(
        "CREATE TRIGGER cache_outbox_row AFTER INSERT OR UPDATE OR DELETE ON series "
        "FOR EACH ROW EXECUTE FUNCTION cache_outbox_record()"
    )
    op.execute(
        "CREATE TRIGGER cache_outbox_truncate AFTER TRUNCATE ON series "
        "FOR EACH STATEMENT EXECUTE FUNCTION cache_outbox_record()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER cache_outbox_truncate ON series")
    op.execute("DROP TRIGGER cache_outbox_row ON series")
    op.drop_index("ix_articles_series_id_series_position", table_name="articles")
    op.drop_constraint(op.f("fk_articles_series_id_series"), "articles", type_="foreignkey")
    op.drop_column("articles", "series_position")
    op.drop_column("articles", "series_id")
    op.drop_table("series")
