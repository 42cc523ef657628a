{#- Incremental staging of the facts (orders, order lines, marketing events, support tickets): a nightly
    run recomputes only the keys whose raw rows changed, and gives exactly what a full rebuild gives.

    The ledger (ops.ingest_batches, written by ingestion in the same transaction as the raw rows) says
    which days of raw each batch inserted into or deleted from (`days_touched`). A staged row can only
    change when a raw row of its key appears or disappears, and either one happens on a touched day:

    - a new version (or a late duplicate) lands on a touched day: its key is found in raw on that day;
    - the version a staged row was built from is deleted or replaced: that row's `_partition_date` is
      a touched day, so its key is found in the staged table on that day.

    Every touched key is recomputed from *all* its raw rows (so "latest version" and "first copy"
    keep their meaning across days); a touched key with no raw row left becomes a tombstone that the
    post-hook deletes. Undated raw rows (no column placed them in a day) are touched on every run.
    Keys are the raw key (`_source_key`), exactly what the deduplication partitions by.

    What a day cannot say falls back to recomputing every key in the same run: a batch that replaced
    a window (`crm build --start/--end`, a changed mapping), an erasure (`removal`, which deletes rows
    without naming days), or such a batch of an entity the model also reads (`also_read`). How far the
    ledger has been applied travels in the table itself (`_ledger_mark`: the newest batch of the
    entity when the row was written), so a failed dbt run applies the same batches again next time.
    `dbt build --full-refresh` rebuilds from scratch as always; the build passes it when a model's
    code changed (pipelines/defs/warehouse). -#}

{#- The ledger, or none when raw was written by something other than crm's ingestion (a hand-made
    warehouse): then every run restages every key, and every row is tested. -#}
{% macro ingest_ledger() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(adapter.get_relation(database=this.database, schema='ops', identifier='ingest_batches')) }}
{%- endmacro %}

{#- What this run must restage: {'every': true} (all keys) or {'every': false, 'days': [...]}.
    Asked of the warehouse at run time; a full build needs no plan. -#}
{% macro incremental_plan(entity, also_read=[]) -%}
    {%- if not execute or not is_incremental() or ingest_ledger() is none -%}
        {{ return({'every': true, 'days': []}) }}
    {%- endif -%}
    {%- set entities = "'" ~ ([entity] + also_read) | join("', '") ~ "'" -%}
    {%- set query -%}
        with mark as (select coalesce(max(_ledger_mark), timestamp '1900-01-01') as applied from {{ this }}),
        since as (
            select * from ops.ingest_batches
            where entity in ({{ entities }}) and finished_at > (select applied from mark)
        )
        select
            coalesce(bool_or(coalesce(mode, '') <> 'incremental'), false) as every_key,
            (
                select string_agg(distinct cast(day as varchar), ',' order by cast(day as varchar))
                from (select unnest(days_touched) as day from since where entity = '{{ entity }}')
            ) as days
        from since
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {{ return({'every': row[0], 'days': (row[1] or '').split(',') | reject('equalto', '') | list}) }}
{%- endmacro %}

{#- The newest batch of an entity: stamped on the rows written by this run (null without a ledger). -#}
{% macro ledger_mark(entity) -%}
    {%- if ingest_ledger() is none -%}
        cast(null as timestamp)
    {%- else -%}
        (select max(finished_at) from ops.ingest_batches where entity = '{{ entity }}')
    {%- endif -%}
{%- endmacro %}

{#- The CTEs `touched_keys` (keys to restage) and `rows_to_stage` (their raw rows) over `keyed`,
    the raw rows with the key columns `keys` computed. -#}
{% macro incremental_rows(keyed, plan, keys) -%}
{%- set key_list = keys | join(', ') -%}
{%- if not is_incremental() %}
touched_keys as (
    select {{ key_list }} from {{ keyed }} where false
),

rows_to_stage as (
    select * from {{ keyed }}
)
{%- elif plan.every %}
touched_keys as (
    select {{ key_list }} from {{ this }}
),

rows_to_stage as (
    select * from {{ keyed }}
)
{%- else %}
{%- set on_touched_day -%}
    _partition_date is null
    {%- if plan.days %} or _partition_date in ({% for day in plan.days %}date '{{ day }}'{{ ', ' if not loop.last }}{% endfor %}){% endif %}
{%- endset %}
touched_keys as (
    select distinct {{ key_list }} from {{ keyed }} where {{ on_touched_day }}
    union
    select {{ key_list }} from {{ this }} where {{ on_touched_day }}
),

rows_to_stage as (
    select {{ keyed }}.* from {{ keyed }} semi join touched_keys using ({{ key_list }})
)
{%- endif %}
{%- endmacro %}

{#- Touched keys that no raw row holds any more: written as tombstones (every other column null) so
    that delete+insert removes the old row, then deleted by `drop_tombstones`. -#}
{% macro tombstones(staged, keys) -%}
    select {{ keys | join(', ') }}, true as _tombstone
    from touched_keys anti join {{ staged }} using ({{ keys | join(', ') }})
{%- endmacro %}

{% macro drop_tombstones() -%}
    delete from {{ this }} where _tombstone
{%- endmacro %}

