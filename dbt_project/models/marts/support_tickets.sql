with tickets as (
    select * from {{ ref('stg_support__tickets') }}
),

records as (
    select * from {{ ref('int_customer_records') }}
    where source = 'support_tickets'
)

select
    tickets.source_system,
    tickets.ticket_id,
    records.customer_id,
    tickets.channel,
    tickets.priority,
    tickets.status,
    tickets.status in ('new', 'open', 'pending') as is_open,
    tickets.subject,
    tickets.created_at,
    cast(tickets.created_at as date) as created_on,
    tickets.updated_at,
    tickets.solved_at,
    case
        when tickets.solved_at is not null and tickets.solved_at >= tickets.created_at
            then {{ dbt.datediff('tickets.created_at', 'tickets.solved_at', 'second') }} / 3600.0
    end as resolution_hours,
    tickets.satisfaction_score,
    tickets.satisfaction_comment
from tickets
left join records
    on records.source_system = tickets.source_system
    and records.source_key = tickets.ticket_key
