{#- Each rep's book as the app reads it: what the scoring step wrote to ml.rep_actions. -#}
select * from {{ source('ml', 'rep_actions') }}
