{#- Email and SMS consent per customer, resolved over every record of the customer (all their
    marketing contacts, every address they unsubscribed from), so a merge or split can never leak
    or lose a consent:
    - an opt-out anywhere wins over every opt-in before it (the strictest wins): an unsubscribe date
      on any of the customer's contacts, an unsubscribe event from any of their addresses, or a
      consent withdrawn (false, with the date it had been given, and no unsubscribe date) dated by
      that contact's last change;
    - an explicit opt-in after the latest opt-out gives consent, dated by the latest opt-in;
    - "no" without a date is the absence of consent, not an opt-out: it never cancels another
      address's consent. -#}
with records as (
    select * from {{ ref('int_customer_records') }}
    where source = 'marketing_contacts'
),

marketing_contacts as (
    select * from {{ ref('stg_marketing__contacts') }}
),

unsubscribe_events as (
    select source_system, email, max(occurred_at) as unsubscribed_at
    from {{ ref('stg_marketing__events') }}
    where event_type = 'unsubscribe' and email is not null
    group by source_system, email
),

contacts as (
    select
        records.customer_id,
        marketing_contacts.*
    from records
    inner join marketing_contacts
        on marketing_contacts.source_system = records.source_system
        and marketing_contacts.contact_key = records.source_key
),

signals as (
    select
        customer_id,
        email,
        updated_at,
        case when email_consent then email_consent_at end as email_opt_in_at,
        coalesce(
            unsubscribed_at,
            case when email_consent = false and email_consent_at is not null then updated_at end
        ) as email_opt_out_at,
        case when sms_consent then sms_consent_at end as sms_opt_in_at,
        case when sms_consent = false and sms_consent_at is not null then updated_at end as sms_opt_out_at
    from contacts
    union all
    select records.customer_id, records.source_key, null, null, unsubscribe_events.unsubscribed_at, null, null
    from records
    inner join unsubscribe_events
        on unsubscribe_events.source_system = records.source_system
        and unsubscribe_events.email = records.source_key
),

per_customer as (
    select
        customer_id,
        max(email_opt_in_at) as email_consent_at,
        max(email_opt_out_at) as unsubscribed_at,
        max(sms_opt_in_at) as sms_consent_at,
        max(sms_opt_out_at) as sms_opt_out_at,
        max(updated_at) as consent_updated_at
    from signals
    group by customer_id
),

mailing_address as (
    {#- The address to write to: the one opted in most recently, else the contact changed last. -#}
    select * from (
        select
            customer_id,
            email,
            row_number() over (
                partition by customer_id
                order by email_opt_in_at desc nulls last, updated_at desc nulls last, email
            ) as address_rank
        from signals
        where email is not null and updated_at is not null
    ) as ranked
    where address_rank = 1
)

select
    per_customer.customer_id,
    mailing_address.email as marketing_email,
    coalesce(
        per_customer.email_consent_at is not null
        and (per_customer.unsubscribed_at is null or per_customer.unsubscribed_at < per_customer.email_consent_at),
        false
    ) as email_consent,
    per_customer.email_consent_at,
    coalesce(
        per_customer.sms_consent_at is not null
        and (per_customer.sms_opt_out_at is null or per_customer.sms_opt_out_at < per_customer.sms_consent_at),
        false
    ) as sms_consent,
    per_customer.sms_consent_at,
    per_customer.unsubscribed_at,
    per_customer.consent_updated_at
from per_customer
left join mailing_address
    on mailing_address.customer_id = per_customer.customer_id
