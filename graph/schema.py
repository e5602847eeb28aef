"""The root schema, combined from each domain's query, mutation and subscription classes."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graph.accounts.mutations import AccountMutations
from graph.accounts.queries import AccountQueries
from graph.balances.mutations import BalanceMutations
from graph.balances.queries import BalanceQueries
from graph.extensions import RequestGuard, process_errors
from graph.inputs import InputGuard
from graph.markets.mutations import MarketMutations
from graph.markets.queries import MarketQueries
from graph.markets.subscriptions import MarketSubscriptions
from graph.orders.mutations import OrderMutations
from graph.orders.queries import OrderQueries
from graph.orders.subscriptions import OrderSubscriptions
from graph.risk.mutations import RiskMutations
from graph.risk.queries import RiskQueries
from graph.risk.subscriptions import RiskSubscriptions
from graph.scalars import MoneyDefinition

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5_000
# Distinct documents kept parsed / validated; bounded so unique queries cannot grow memory.
CACHE_SIZE = 512

# The depth and alias rules, made once. QueryDepthLimiter and MaxAliasesLimiter make a new
# rule class per instance, i.e. per request; the rules are part of ValidationCache's key, so
# with them every request missed the cache and was validated again (~40 % of the API's CPU
# under load, by py-spy).
LIMIT_RULES: list[type[ASTValidationRule]] = [
    query_depth_limiter.create_validator(MAX_DEPTH, should_ignore=None),
    max_aliases.create_validator(MAX_ALIASES),
]


@strawberry.type
class Query(MarketQueries, OrderQueries, BalanceQueries, AccountQueries, RiskQueries):
    pass


@strawberry.type
class Mutation(AccountMutations, OrderMutations, BalanceMutations, MarketMutations, RiskMutations):
    pass


@strawberry.type
class Subscription(MarketSubscriptions, OrderSubscriptions, RiskSubscriptions):
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
    config=StrawberryConfig(scalar_map={Decimal: MoneyDefinition}),
    extensions=[
        RequestGuard,
        InputGuard,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules(LIMIT_RULES),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
    ],
)
