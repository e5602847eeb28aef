"""The root schema, combined from each domain's query, mutation and subscription classes."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graph.accounts.mutations import AccountMutations
from graph.accounts.queries import AccountQueries
from graph.balances.mutations import BalanceMutations
from graph.balances.queries import BalanceQueries
from graph.extensions import DocumentCache, RequestGuard, process_errors
from graph.fees.queries import FeeQueries
from graph.inputs import InputGuard
from graph.markets.candles import CandleQueries, CandleSubscriptions
from graph.markets.mutations import MarketMutations
from graph.markets.queries import MarketQueries
from graph.markets.subscriptions import MarketSubscriptions
from graph.markets.tickers import TickerQueries, TickerSubscriptions
from graph.orders.mutations import OrderMutations
from graph.orders.queries import OrderQueries
from graph.orders.subscriptions import OrderSubscriptions
from graph.risk.controls import RiskControlMutations, RiskControlQueries
from graph.risk.mutations import RiskMutations
from graph.risk.queries import RiskQueries
from graph.risk.subscriptions import RiskSubscriptions
from graph.scalars import MoneyDefinition, SignedDecimal, SignedDecimalDefinition
from graph.shared import SharedEventExecution


@strawberry.type
class Query(
    MarketQueries,
    OrderQueries,
    BalanceQueries,
    AccountQueries,
    RiskQueries,
    FeeQueries,
    RiskControlQueries,
    TickerQueries,
    CandleQueries,
):
    pass


@strawberry.type
class Mutation(
    AccountMutations,
    OrderMutations,
    BalanceMutations,
    MarketMutations,
    RiskMutations,
    RiskControlMutations,
):
    pass


@strawberry.type
class Subscription(
    MarketSubscriptions,
    OrderSubscriptions,
    RiskSubscriptions,
    TickerSubscriptions,
    CandleSubscriptions,
):
    pass


class TradeGraphSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        process_errors(errors, execution_context)


schema = TradeGraphSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(
        scalar_map={Decimal: MoneyDefinition, SignedDecimal: SignedDecimalDefinition}
    ),
    # Each is instantiated per operation (Strawberry's rule): they keep nothing else.
    extensions=[RequestGuard, InputGuard, DocumentCache],
    # A book update many subscribers receive is executed once (graph/shared.py).
    execution_context_class=SharedEventExecution,
)
