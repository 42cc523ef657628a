{#- The marketing platform's contacts, keyed within their source system by the platform's contact id
    when it has one, else by the address as written, normalised (lower-case, trimmed), else by the
    phone or external ids: the latest change of each key wins. An address that is not shaped like
    one is kept as the key (lower-cased) but not as an email. -#}
with source as (
    select
        *,
        {{ source_system() }} as source_system,
        {{ clean_email('email') }} as email_normalised
    from {{ source('raw', 'marketing_contacts') }}
),

keyed as (
    select
        *,
        coalesce(
            {{ clean_text('contact_id') }},
            email_normalised,
            lower({{ clean_text('email') }}),
            {{ clean_text('phone') }},
            external_ids
        ) as contact_key
    from source
),

latest as (
    {{ latest_row('keyed', 'source_system, contact_key', 'updated_at desc, _ingested_at desc') }}
)

select
    source_system,
    contact_key,
    {{ clean_text('contact_id') }} as contact_id,
    email_normalised as email,
    {{ clean_text('first_name') }} as first_name,
    {{ clean_text('last_name') }} as last_name,
    {{ clean_text('phone') }} as phone_raw,
    {{ clean_text('city') }} as city,
    {{ clean_postcode('postcode') }} as postcode,
    {{ person_attributes() }},
    email_consent,
    email_consent_at,
    sms_consent,
    sms_consent_at,
    unsubscribed_at,
    updated_at
from latest
where contact_key is not null
