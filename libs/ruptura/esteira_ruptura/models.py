"""What a ruptura analysis reports, per order line and per order (the JSON clients receive)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, StringConstraints

# An order number: letters, digits and . / - _ (no spaces, quotes or control characters).
ORDER_NUMBER_PATTERN = r"^[\w./-]+$"
ORDER_NUMBER_MAX_LENGTH = 40


def _number_as_text(value: Any) -> Any:
    """Order numbers may come as JSON numbers, as the seed's front ends send them."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


OrderNumber = Annotated[
    str,
    BeforeValidator(_number_as_text),
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=ORDER_NUMBER_MAX_LENGTH,
        pattern=ORDER_NUMBER_PATTERN,
    ),
]


class Criticidade(StrEnum):
    CRITICA = "CRITICA"
    ALTA = "ALTA"
    MEDIA = "MEDIA"
    BAIXA = "BAIXA"


class OrderLine(NamedTuple):
    """One open line of the carteira, as stored (a tuple: sessions read hundreds of thousands)."""

    num_pedido: str
    cod_produto: str
    nome_produto: str
    qtd_saldo: float
    preco: float
    data_expedicao: date | None
    cnpj: str
    cliente: str


class ItemReport(BaseModel):
    """The schema of one line's verdict (reports are built as dicts; see analysis.py)."""

    cod_produto: str
    nome_produto: str
    qtd_saldo: float
    preco: float
    valor: float
    menor_estoque_d7: float
    ruptura: bool
    ruptura_qtd: float
    data_disponibilidade: date | None  # None: sem previsão within the horizon


class OrderReport(BaseModel):
    """The schema of one order's report, as stored in a session and returned by the API."""

    num_pedido: str
    status: Literal["analisado"] = "analisado"
    mode: str
    cliente: str
    cnpj: str
    data_expedicao: date | None
    qtd_itens: int
    qtd_itens_ruptura: int
    qtd_itens_disponiveis: int
    valor_total: float
    valor_ruptura: float  # the whole value of the lines in rupture (the original system's)
    valor_faltante: float  # what is missing: ruptura_qtd × preco, summed over the lines
    percentual_disponibilidade: float  # 100 − percentual_ruptura
    percentual_ruptura: float  # valor_ruptura / valor_total × 100 (by line count if worth 0)
    data_disponibilidade_total: date | None
    sem_previsao: bool
    coberto_pelo_estoque: bool  # every line can ship on its reference date
    criticidade: Criticidade
    itens: list[ItemReport]


class OrderNotFound(BaseModel):
    num_pedido: str
    status: Literal["nao_encontrado"] = "nao_encontrado"
    erro: str = "pedido não encontrado entre os pedidos ativos da carteira"


class OrderFailed(BaseModel):
    """An order of a batch that could not be analysed after every try (its session ends with
    it in error instead of waiting for it forever)."""

    num_pedido: str
    status: Literal["erro"] = "erro"
    erro: str = "a análise deste pedido falhou depois de várias tentativas; tente de novo"
