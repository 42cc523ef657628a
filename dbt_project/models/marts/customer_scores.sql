{#- The scores as the app and the exports read them: what the scoring step wrote to
    ml.customer_scores, one row per customer who has ordered. -#}
select * from {{ source('ml', 'customer_scores') }}
