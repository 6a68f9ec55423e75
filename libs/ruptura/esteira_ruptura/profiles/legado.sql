-- The legacy order system's schema (PostgreSQL) that the legado.yaml source profile reads: the
-- shape of the system the ruptura teams used before Esteira. Esteira never writes it; the tests
-- build it, fill it and read it through a role that may only SELECT.
--
-- The system never deletes: it closes an order (situacao 'F' faturado, 'C' cancelado) and
-- cancels a schedule entry (situacao 'C'); every insert and update stamps alterado_em (the
-- default and the trigger below), which is what the profile's version query reads.

CREATE TABLE clientes (
    cnpj          varchar(14)  PRIMARY KEY,
    razao_social  varchar(200) NOT NULL,
    alterado_em   timestamptz  NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE produtos (
    codigo        varchar(40)  PRIMARY KEY,
    descricao     varchar(200) NOT NULL,
    alterado_em   timestamptz  NOT NULL DEFAULT clock_timestamp()
);

-- situacao: 'A' aberto, 'F' faturado, 'C' cancelado
CREATE TABLE pedidos (
    numero        varchar(40)  PRIMARY KEY,
    cnpj_cliente  varchar(14)  REFERENCES clientes (cnpj),
    data_entrega  date,
    situacao      char(1)      NOT NULL DEFAULT 'A',
    alterado_em   timestamptz  NOT NULL DEFAULT clock_timestamp()
);

-- The quantity still to deliver is quantidade - quantidade_atendida.
CREATE TABLE itens_pedido (
    numero_pedido        varchar(40)   NOT NULL REFERENCES pedidos (numero),
    sequencia            integer       NOT NULL,
    codigo_produto       varchar(40)   NOT NULL REFERENCES produtos (codigo),
    quantidade           numeric(14,3) NOT NULL,
    quantidade_atendida  numeric(14,3) NOT NULL DEFAULT 0,
    preco_unitario       numeric(14,4),
    alterado_em          timestamptz   NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (numero_pedido, sequencia)
);
CREATE INDEX itens_pedido_produto ON itens_pedido (codigo_produto);

CREATE TABLE estoque_atual (
    codigo_produto  varchar(40)   PRIMARY KEY REFERENCES produtos (codigo),
    saldo           numeric(14,3) NOT NULL,
    alterado_em     timestamptz   NOT NULL DEFAULT clock_timestamp()
);

-- Production orders; situacao: 'P' planejada, 'C' cancelada
CREATE TABLE programacao (
    id              serial        PRIMARY KEY,
    codigo_produto  varchar(40)   NOT NULL REFERENCES produtos (codigo),
    data_prevista   date          NOT NULL,
    quantidade      numeric(14,3) NOT NULL,
    situacao        char(1)       NOT NULL DEFAULT 'P',
    alterado_em     timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX programacao_produto ON programacao (codigo_produto);

-- Planned outflows (transfers, reserved shipments); situacao: 'P' prevista, 'C' cancelada
CREATE TABLE saidas (
    id              serial        PRIMARY KEY,
    codigo_produto  varchar(40)   NOT NULL REFERENCES produtos (codigo),
    data_prevista   date          NOT NULL,
    quantidade      numeric(14,3) NOT NULL,
    situacao        char(1)       NOT NULL DEFAULT 'P',
    alterado_em     timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX saidas_produto ON saidas (codigo_produto);

-- Every update stamps the row, so max(alterado_em) moves with every change.
CREATE FUNCTION carimbar_alteracao() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.alterado_em := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TRIGGER clientes_alterado BEFORE UPDATE ON clientes
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();
CREATE TRIGGER produtos_alterado BEFORE UPDATE ON produtos
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();
CREATE TRIGGER pedidos_alterado BEFORE UPDATE ON pedidos
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();
CREATE TRIGGER itens_pedido_alterado BEFORE UPDATE ON itens_pedido
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();
CREATE TRIGGER estoque_atual_alterado BEFORE UPDATE ON estoque_atual
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();
CREATE TRIGGER programacao_alterado BEFORE UPDATE ON programacao
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();
CREATE TRIGGER saidas_alterado BEFORE UPDATE ON saidas
    FOR EACH ROW EXECUTE FUNCTION carimbar_alteracao();

-- max(alterado_em) of each table is one index lookup.
CREATE INDEX clientes_alterado_em ON clientes (alterado_em);
CREATE INDEX produtos_alterado_em ON produtos (alterado_em);
CREATE INDEX pedidos_alterado_em ON pedidos (alterado_em);
CREATE INDEX itens_pedido_alterado_em ON itens_pedido (alterado_em);
CREATE INDEX estoque_atual_alterado_em ON estoque_atual (alterado_em);
CREATE INDEX programacao_alterado_em ON programacao (alterado_em);
CREATE INDEX saidas_alterado_em ON saidas (alterado_em);
