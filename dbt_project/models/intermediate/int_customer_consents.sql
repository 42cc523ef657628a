{#- Email and SMS consent per customer from the marketing platform: the most recently changed
    marketing contact of the customer speaks for them. -#}
with records as (
    select * from {{ ref('int_customer_records') }}
    where source = 'marketing_contacts'
),

marketing_contacts as (
    select * from {{ ref('stg_marketing__contacts') }}
),

ranked as (
    select
        records.customer_id,
        marketing_contacts.*,
        row_number() over (
            partition by records.customer_id
            order by marketing_contacts.updated_at desc, marketing_contacts.email
        ) as contact_rank,
        max(marketing_contacts.unsubscribed_at) over (partition by records.customer_id) as last_unsubscribed_at
    from records
    inner join marketing_contacts
        on marketing_contacts.email = records.source_key
)

select
    customer_id,
    email as marketing_email,
    coalesce(email_consent, false) as email_consent,
    email_consent_at,
    coalesce(sms_consent, false) as sms_consent,
    sms_consent_at,
    last_unsubscribed_at as unsubscribed_at,
    updated_at as consent_updated_at
from ranked
where contact_rank = 1
