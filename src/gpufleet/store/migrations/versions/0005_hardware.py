"""hardware identity (placeholder: filled in by the hardware-identity work)

Revision ID: 0005_hardware
Revises: 0004_usage
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0005_hardware'
down_revision = '0004_usage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
