{#- Shared by the staging models of the entities that describe a person (see crm/ingest/entities.py). -#}

{#- The sources config's name of the system a row came from: keys are only unique within it. A row
    loaded before ingestion recorded it has none (ingestion names it when the entity has one source). -#}
{% macro source_system() -%}
    coalesce(_source_system, 'unnamed')
{%- endmacro %}

{#- The optional person attributes, trimmed; identity resolution (Python) normalises them further. -#}
{% macro person_attributes() -%}
    {{ clean_text('full_name') }} as full_name,
    {{ clean_text('birth_date') }} as birth_date,
    {{ clean_text('street_number') }} as street_number,
    {{ clean_text('address_line1') }} as address_line1,
    {{ clean_text('address_line2') }} as address_line2,
    {{ clean_text('region') }} as region,
    {{ clean_text('country') }} as country,
    external_ids
{%- endmacro %}
