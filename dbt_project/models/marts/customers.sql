{#- The golden record: one row per resolved customer. Contact fields come from survivorship
    (int_customers_survived) with a *_source column naming the winning source. -#}
with survived as (
    select * from {{ ref('int_customers_survived') }}
),

records as (
    select * from {{ ref('int_customer_records') }}
),

record_counts as (
    select
        customer_id,
        sum(case when source = 'sales_contacts' then 1 else 0 end) as sales_contact_records,
        sum(case when source = 'marketing_contacts' then 1 else 0 end) as marketing_contact_records,
        sum(case when source = 'support_tickets' then 1 else 0 end) as support_ticket_records,
        count(distinct source_system) as source_systems,
        min(record_created_at) as first_seen_at,
        max(resolved_at) as resolved_at
    from records
    group by customer_id
),

consents as (
    select * from {{ ref('int_customer_consents') }}
),

accounts as (
    select * from {{ ref('int_customer_accounts') }}
),

reps as (
    select * from {{ ref('stg_sales__reps') }}
)

select
    survived.customer_id,
    survived.first_name,
    survived.first_name_source,
    survived.last_name,
    survived.last_name_source,
    trim({{ dbt.concat(["coalesce(survived.first_name, '')", "' '", "coalesce(survived.last_name, '')"]) }}) as full_name,
    survived.email,
    survived.email_source,
    survived.phone,
    survived.phone_source,
    survived.city,
    survived.city_source,
    survived.postcode,
    survived.postcode_source,
    survived.birth_date,
    survived.birth_date_source,
    survived.address_line1,
    survived.address_line1_source,
    survived.address_line2,
    survived.address_line2_source,
    survived.region,
    survived.region_source,
    survived.country,
    survived.country_source,
    {#- consent is resolved over all the customer's records (int_customer_consents) -#}
    coalesce(consents.email_consent, false) as email_consent,
    consents.email_consent_at,
    coalesce(consents.sms_consent, false) as sms_consent,
    consents.sms_consent_at,
    consents.unsubscribed_at,
    consents.marketing_email,
    accounts.account_id,
    accounts.account_name,
    coalesce(accounts.segment, 'Unknown') as segment,
    accounts.payment_terms_days,
    accounts.owner_rep_id,
    reps.rep_name as owner_rep_name,
    record_counts.sales_contact_records,
    record_counts.marketing_contact_records,
    record_counts.support_ticket_records,
    record_counts.source_systems,
    record_counts.first_seen_at,
    record_counts.resolved_at
from survived
inner join record_counts
    on record_counts.customer_id = survived.customer_id
left join consents
    on consents.customer_id = survived.customer_id
left join accounts
    on accounts.customer_id = survived.customer_id
left join reps
    on reps.rep_id = accounts.owner_rep_id
