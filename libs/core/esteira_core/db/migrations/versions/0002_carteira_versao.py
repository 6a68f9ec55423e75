"""carteira version: one row, bumped by every carteira load

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 14:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('carteira_versao',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('versao', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_carteira_versao'))
    )
    op.bulk_insert(table, [{'id': 1, 'versao': 0}])


def downgrade() -> None:
    op.drop_table('carteira_versao')
