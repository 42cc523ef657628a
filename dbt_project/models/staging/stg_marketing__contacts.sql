{#- The marketing platform's contacts keyed by the address as written, normalised (lower-case,
    trimmed): the latest change of each address wins. -#}
with source as (
    select
        *,
        {{ clean_email('email') }} as email_normalised
    from {{ source('raw', 'marketing_contacts') }}
),

latest as (
    {{ latest_row('source', 'email_normalised', 'updated_at desc, _ingested_at desc') }}
)

select
    email_normalised as email,
    {{ clean_text('first_name') }} as first_name,
    {{ clean_text('last_name') }} as last_name,
    {{ clean_text('phone') }} as phone_raw,
    email_consent,
    email_consent_at,
    sms_consent,
    sms_consent_at,
    unsubscribed_at,
    updated_at
from latest
where email_normalised is not null
