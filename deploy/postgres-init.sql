-- One database per service (each service owns its own); run once by the postgres image at first start.
SELECT 'placeholder' WHERE false;
