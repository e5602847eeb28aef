"""The seed's schema, plus markets, fee tiers, the ledger and the fee account.

The seed's tables (users, orders, trades, balances, risk_events) keep their names, columns,
types, CHECK constraints and indexes exactly; additions are marked "brief:" below.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email VARCHAR(255) UNIQUE NOT NULL,
    username VARCHAR(50) UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    kyc_status VARCHAR(50) DEFAULT 'pending' CHECK (kyc_status IN ('pending', 'approved', 'rejected')),
    fee_tier INTEGER DEFAULT 1 CHECK (fee_tier BETWEEN 1 AND 5),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    -- brief: 'system' is the exchange's own fee account, which cannot log in.
    role VARCHAR(20) NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'system')),
    -- brief: an admin may pin the fee tier instead of the 30-day volume deciding it.
    fee_tier_override BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_kyc_status ON users(kyc_status);

CREATE TRIGGER trg_users_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

-- brief: markets, with the grid every order must sit on.
CREATE TABLE markets (
    symbol VARCHAR(20) PRIMARY KEY CHECK (symbol = UPPER(symbol) AND symbol = base_asset || '-' || quote_asset),
    base_asset VARCHAR(20) NOT NULL CHECK (base_asset = UPPER(base_asset)),
    quote_asset VARCHAR(20) NOT NULL CHECK (quote_asset = UPPER(quote_asset)),
    tick_size DECIMAL(20,8) NOT NULL CHECK (tick_size > 0),
    lot_size DECIMAL(20,8) NOT NULL CHECK (lot_size > 0),
    min_notional DECIMAL(20,8) NOT NULL DEFAULT 0 CHECK (min_notional >= 0),
    status VARCHAR(10) NOT NULL DEFAULT 'TRADING' CHECK (status IN ('TRADING', 'HALTED')),
    halt_reason TEXT,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TRIGGER trg_markets_updated_at
    BEFORE UPDATE ON markets
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

-- brief: fee tiers by 30-day quote volume; rates are fractions (0.001000 = 0.1 %).
CREATE TABLE fee_tiers (
    tier INTEGER PRIMARY KEY CHECK (tier BETWEEN 1 AND 5),
    maker_rate DECIMAL(10,6) NOT NULL CHECK (maker_rate >= 0 AND maker_rate < 1),
    taker_rate DECIMAL(10,6) NOT NULL CHECK (taker_rate >= 0 AND taker_rate < 1),
    min_volume_30d DECIMAL(30,8) NOT NULL UNIQUE CHECK (min_volume_30d >= 0)
);

CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT REFERENCES users(id),
    symbol VARCHAR(20) NOT NULL CHECK (symbol = UPPER(symbol)),
    side VARCHAR(4) NOT NULL CHECK (side IN ('BUY', 'SELL')),
    type VARCHAR(10) NOT NULL CHECK (type IN ('MARKET', 'LIMIT')),
    quantity DECIMAL(20,8) NOT NULL CHECK (quantity > 0),
    price DECIMAL(20,8) CHECK (price > 0),
    filled_quantity DECIMAL(20,8) DEFAULT 0 CHECK (filled_quantity >= 0),
    status VARCHAR(20) DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'PARTIAL', 'FILLED', 'CANCELLED')),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    -- brief: idempotency key chosen by the client, unique per user.
    client_order_id VARCHAR(64) CHECK (client_order_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    time_in_force VARCHAR(3) NOT NULL DEFAULT 'GTC' CHECK (time_in_force IN ('GTC', 'IOC', 'FOK')),
    post_only BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT ck_orders_filled_le_quantity CHECK (filled_quantity <= quantity),
    CONSTRAINT ck_orders_limit_has_price CHECK (type = 'MARKET' OR price IS NOT NULL),
    CONSTRAINT fk_orders_symbol FOREIGN KEY (symbol) REFERENCES markets(symbol)
);

CREATE INDEX idx_orders_symbol_status ON orders(symbol, status);
CREATE INDEX idx_orders_user_created ON orders(user_id, created_at DESC);
CREATE INDEX idx_orders_symbol_side_price ON orders(symbol, side, price) WHERE status IN ('PENDING', 'PARTIAL');
CREATE UNIQUE INDEX uq_orders_user_client_order_id ON orders(user_id, client_order_id) WHERE client_order_id IS NOT NULL;

CREATE TRIGGER trg_orders_updated_at
    BEFORE UPDATE ON orders
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE trades (
    id BIGSERIAL PRIMARY KEY,
    symbol VARCHAR(20) NOT NULL CHECK (symbol = UPPER(symbol)),
    buyer_order_id BIGINT REFERENCES orders(id),
    seller_order_id BIGINT REFERENCES orders(id),
    quantity DECIMAL(20,8) NOT NULL CHECK (quantity > 0),
    price DECIMAL(20,8) NOT NULL CHECK (price > 0),
    buyer_fee DECIMAL(20,8) NOT NULL CHECK (buyer_fee >= 0),
    seller_fee DECIMAL(20,8) NOT NULL CHECK (seller_fee >= 0),
    executed_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_trades_symbol_time ON trades(symbol, executed_at DESC);
CREATE INDEX idx_trades_buyer_order ON trades(buyer_order_id);
CREATE INDEX idx_trades_seller_order ON trades(seller_order_id);

CREATE TABLE balances (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT REFERENCES users(id),
    asset VARCHAR(20) NOT NULL CHECK (asset = UPPER(asset)),
    available DECIMAL(20,8) DEFAULT 0 CHECK (available >= 0),
    locked DECIMAL(20,8) DEFAULT 0 CHECK (locked >= 0),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(user_id, asset)
);

CREATE INDEX idx_balances_user ON balances(user_id);
CREATE INDEX idx_balances_asset ON balances(asset);

CREATE TRIGGER trg_balances_updated_at
    BEFORE UPDATE ON balances
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE risk_events (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT REFERENCES users(id),
    event_type VARCHAR(50) NOT NULL CHECK (event_type IN ('WITHDRAWAL', 'DEPOSIT', 'TRADE', 'LOGIN', 'SUSPICIOUS_ACTIVITY')),
    severity VARCHAR(20) NOT NULL CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    description TEXT,
    metadata JSONB,
    resolved BOOLEAN DEFAULT false,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_risk_events_user_time ON risk_events(user_id, created_at DESC);
CREATE INDEX idx_risk_events_type ON risk_events(event_type);
CREATE INDEX idx_risk_events_severity ON risk_events(severity);
CREATE INDEX idx_risk_events_unresolved ON risk_events(resolved) WHERE resolved = false;

CREATE TRIGGER trg_risk_events_updated_at
    BEFORE UPDATE ON risk_events
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

-- brief: every balance change, append-only, with its reason and what caused it.
CREATE TABLE ledger_entries (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    asset VARCHAR(20) NOT NULL CHECK (asset = UPPER(asset)),
    available_delta DECIMAL(20,8) NOT NULL,
    locked_delta DECIMAL(20,8) NOT NULL,
    amount DECIMAL(21,8) GENERATED ALWAYS AS (available_delta + locked_delta) STORED,
    reason VARCHAR(20) NOT NULL CHECK (reason IN ('DEPOSIT', 'WITHDRAWAL', 'ORDER_LOCK', 'ORDER_UNLOCK', 'TRADE', 'FEE')),
    reference VARCHAR(100) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT ck_ledger_entries_nonzero CHECK (available_delta <> 0 OR locked_delta <> 0)
);

CREATE INDEX idx_ledger_entries_user_asset ON ledger_entries(user_id, asset, id);
CREATE INDEX idx_ledger_entries_reference ON ledger_entries(reference);

CREATE FUNCTION ledger_entries_append_only()
RETURNS TRIGGER AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER trg_ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW
    EXECUTE FUNCTION ledger_entries_append_only();

-- Seed data: the brief's fee table, the two markets, and the exchange's fee account.
INSERT INTO fee_tiers (tier, maker_rate, taker_rate, min_volume_30d) VALUES
    (1, 0.001000, 0.001500, 0),
    (2, 0.000900, 0.001350, 100000),
    (3, 0.000800, 0.001200, 1000000),
    (4, 0.000600, 0.001000, 10000000),
    (5, 0.000400, 0.000800, 50000000);

INSERT INTO markets (symbol, base_asset, quote_asset, tick_size, lot_size, min_notional) VALUES
    ('BTC-USDT', 'BTC', 'USDT', 0.01, 0.00001, 5),
    ('ETH-USDT', 'ETH', 'USDT', 0.01, 0.0001, 5);

INSERT INTO users (email, username, password_hash, kyc_status, role) VALUES
    ('fees@tradegraph.internal', 'exchange-fees', '!', 'approved', 'system');
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS ledger_entries;
DROP FUNCTION IF EXISTS ledger_entries_append_only();
DROP TABLE IF EXISTS risk_events;
DROP TABLE IF EXISTS balances;
DROP TABLE IF EXISTS trades;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS fee_tiers;
DROP TABLE IF EXISTS markets;
DROP TABLE IF EXISTS users;
DROP FUNCTION IF EXISTS update_updated_at_column();
"""


def _statements(script: str) -> list[str]:
    """Split a script on top-level semicolons (asyncpg prepares one statement at a time)."""
    statements, current, in_body = [], [], False
    for line in script.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    assert not "".join(current).strip(), "script ends without a semicolon"
    return statements


def upgrade() -> None:
    for statement in _statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DOWNGRADE):
        op.execute(statement)
