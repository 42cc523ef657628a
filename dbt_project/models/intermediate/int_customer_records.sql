{{ config(materialized='view') }}

{#- Every source record with the customer it was resolved to (identity.records is written by the
    Python identity asset; see crm/identity/resolution.py). -#}
select
    record_key,
    source,
    source_system,
    source_key,
    customer_id,
    email,
    phone_e164 as phone,
    first_name,
    last_name,
    birth_date,
    address_line1,
    address_line2,
    city,
    postcode,
    region,
    country,
    external_ids,
    record_created_at,
    record_updated_at,
    match_rule,
    match_probability,
    match_evidence,
    resolved_at
from {{ source('identity', 'records') }}
