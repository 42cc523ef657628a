{#- Text cleaning shared by the staging models. Dispatched so another adapter (Spark) can supply
    its own regex flavour; the default is ANSI-ish SQL that Spark understands as is. -#}

{% macro collapse_whitespace(expr) -%}
    {{ return(adapter.dispatch('collapse_whitespace', 'crm_warehouse')(expr)) }}
{%- endmacro %}

{% macro default__collapse_whitespace(expr) -%}
    regexp_replace({{ expr }}, '\\s+', ' ')
{%- endmacro %}

{% macro duckdb__collapse_whitespace(expr) -%}
    regexp_replace({{ expr }}, '\s+', ' ', 'g')
{%- endmacro %}

{#- Trimmed, inner whitespace collapsed, empty -> null. -#}
{% macro clean_text(expr) -%}
    nullif(trim({{ collapse_whitespace(expr) }}), '')
{%- endmacro %}

{#- Lower-cased and trimmed; anything that is not shaped like an address becomes null. -#}
{% macro clean_email(expr) -%}
    case
        when lower(trim({{ expr }})) like '%_@_%._%' and trim({{ expr }}) not like '% %'
            then lower(trim({{ expr }}))
    end
{%- endmacro %}

{#- Upper-case, single inner spaces: 'sw1a1aa ' and 'SW1A  1AA' stay as written otherwise. -#}
{% macro clean_postcode(expr) -%}
    upper({{ clean_text(expr) }})
{%- endmacro %}

{% macro clean_category(expr) -%}
    lower({{ clean_text(expr) }})
{%- endmacro %}
