{#- Each customer's account (and so B2B/B2C segment and owner rep): the account of their most
    recently updated sales contact; for a customer known only from orders, the account of their
    latest order. The rep is the account owner, else the rep on the latest order. -#}
with records as (
    select * from {{ ref('int_customer_records') }}
    where source = 'sales_contacts'
),

contacts as (
    select * from {{ ref('stg_sales__contacts') }}
),

orders as (
    select * from {{ ref('stg_sales__orders') }}
),

accounts as (
    select * from {{ ref('stg_sales__accounts') }}
),

contact_accounts as (
    select
        records.customer_id,
        contacts.account_id,
        cast(null as {{ dbt.type_bigint() }}) as order_rep_id,
        1 as evidence_rank,
        contacts.updated_at as seen_at
    from records
    inner join contacts
        on contacts.source_system = records.source_system
        and contacts.contact_key = records.source_key
    where contacts.account_id is not null
),

order_accounts as (
    select
        records.customer_id,
        orders.account_id,
        orders.owner_rep_id as order_rep_id,
        2 as evidence_rank,
        orders.order_date as seen_at
    from records
    inner join orders
        on orders.customer_system = records.source_system
        and orders.customer_ref = records.source_key
),

candidates as (
    select * from contact_accounts
    union all
    select * from order_accounts
),

best_account as (
    select * from (
        select
            candidates.*,
            row_number() over (
                partition by customer_id
                order by case when account_id is null then 1 else 0 end, evidence_rank, seen_at desc
            ) as account_rank
        from candidates
    ) as ranked
    where account_rank = 1
),

latest_order_rep as (
    select * from (
        select
            customer_id,
            order_rep_id,
            row_number() over (partition by customer_id order by seen_at desc) as rep_rank
        from order_accounts
        where order_rep_id is not null
    ) as ranked
    where rep_rank = 1
)

select
    best_account.customer_id,
    best_account.account_id,
    accounts.account_name,
    coalesce(accounts.account_type, 'Unknown') as segment,
    accounts.payment_terms_days,
    coalesce(accounts.owner_rep_id, latest_order_rep.order_rep_id) as owner_rep_id
from best_account
left join accounts
    on accounts.account_id = best_account.account_id
left join latest_order_rep
    on latest_order_rep.customer_id = best_account.customer_id
