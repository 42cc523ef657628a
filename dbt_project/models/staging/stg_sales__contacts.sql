{#- Latest version of each sales contact, cleaned. Phones stay as written (trimmed): E.164 needs
    a phone-number library and is done in Python by the identity asset (identity.records).
    A contact is identified by its source system and id: two shops may both have a contact 17. -#}
with source as (
    select *, {{ source_system() }} as source_system
    from {{ source('raw', 'sales_contacts') }}
),

latest as (
    {{ latest_row('source', 'source_system, contact_id', 'updated_at desc, _ingested_at desc') }}
)

select
    source_system,
    contact_id,
    {{ dbt.cast('contact_id', dbt.type_string()) }} as contact_key,
    account_id,
    {{ clean_text('first_name') }} as first_name,
    {{ clean_text('last_name') }} as last_name,
    {{ clean_email('email') }} as email,
    {{ clean_text('phone') }} as phone_raw,
    {{ clean_text('city') }} as city,
    {{ clean_postcode('postcode') }} as postcode,
    {{ person_attributes() }},
    created_at,
    updated_at
from latest
