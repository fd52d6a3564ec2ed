//! Join: two generated datasets joined with CoGroupByKey, enriched from a side input.
//!
//! ```text
//! cargo run --release --example join                       # 200,000 orders, 20,000 customers
//! cargo run --release --example join -- --orders=1000000 --output=out/spend
//! ```
//!
//! Customers have a country; orders have a customer and an amount in their country's
//! currency. The pipeline groups orders and customers by customer id (CoGroupByKey),
//! converts each customer's total to euros with exchange rates read as a map side input,
//! and writes `customer<TAB>country<TAB>orders<TAB>euros` lines. Customers without orders
//! are written with 0; orders of unknown customers are counted in a user metric.

use std::collections::HashMap;

use sluice::prelude::*;
use sluice::transforms::cogroup::{CoGbkResult, CoGroupByKey};
use sluice::transforms::side_input::SideInput;

/// A customer: id, name and country code.
type Customer = (u64, String, String);
/// An order: customer id and amount in cents of the customer's currency.
type Order = (u64, u64);

const COUNTRIES: [(&str, f64); 5] = [
    ("DE", 1.0),
    ("FR", 1.0),
    ("GB", 1.17),
    ("US", 0.92),
    ("JP", 0.0061),
];

/// Totals a customer's orders, in euros.
#[derive(Clone)]
struct Spend {
    customers: TupleTag<Customer>,
    orders: TupleTag<Order>,
    rates: SideInput<HashMap<String, f64>>,
}

impl DoFn for Spend {
    type In = (u64, CoGbkResult);
    type Out = String;

    fn process(
        &mut self,
        (id, grouped): (u64, CoGbkResult),
        ctx: &mut Context<'_, String>,
    ) -> Result<(), BoxError> {
        let orders = grouped.try_get(&self.orders)?;
        let Some((_, name, country)) = grouped.try_get(&self.customers)?.pop() else {
            ctx.metrics()
                .inc_counter("orders_of_unknown_customers", orders.len() as i64);
            return Ok(());
        };
        let rate = *ctx
            .side_input(&self.rates)?
            .get(&country)
            .ok_or_else(|| format!("no exchange rate for {country} (customer {id})"))?;
        let cents: u64 = orders.iter().map(|(_, amount)| amount).sum();
        ctx.metrics()
            .update_distribution("orders_per_customer", orders.len() as i64);
        ctx.emit(format!(
            "{name}\t{country}\t{}\t{:.2}",
            orders.len(),
            cents as f64 / 100.0 * rate
        ));
        Ok(())
    }
}

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    let n_orders = p.arg_parse::<u64>("orders")?.unwrap_or(200_000);
    let n_customers = p.arg_parse::<u64>("customers")?.unwrap_or(20_000).max(1);
    let default_output = std::env::temp_dir().join("sluice-join").join("spend");
    let output = p.arg_or("output", &default_output.to_string_lossy());

    let customers: Vec<(u64, Customer)> = (0..n_customers)
        .map(|id| {
            let country = COUNTRIES[(id % COUNTRIES.len() as u64) as usize].0;
            (id, (id, format!("customer-{id}"), country.to_string()))
        })
        .collect();
    // Orders reference a few customer ids past the end: unknown customers.
    let orders: Vec<(u64, Order)> = (0..n_orders)
        .map(|i| {
            let customer = i.wrapping_mul(2_654_435_761) % (n_customers + n_customers / 100 + 1);
            (customer, (customer, 100 + (i * 7_919) % 50_000))
        })
        .collect();
    let rates = p
        .create(
            "Rates",
            COUNTRIES
                .iter()
                .map(|(c, r)| (c.to_string(), *r))
                .collect::<Vec<_>>(),
        )
        .as_map("RateView");

    let customer_tag = TupleTag::<Customer>::new("customers");
    let order_tag = TupleTag::<Order>::new("orders");
    let grouped = CoGroupByKey::new()
        .and(&customer_tag, &p.create("Customers", customers))
        .and(&order_tag, &p.create("Orders", orders))
        .apply("JoinByCustomer");
    let spend = Spend {
        customers: customer_tag,
        orders: order_tag,
        rates: rates.clone(),
    };
    grouped
        .par_do_with_side_inputs("Spend", spend, &[rates.spec()])
        .write_text("Write", &output);

    let result = p.run()?;
    if result.is_submitted() {
        // The job service runs the job: follow it there (`sluice jobs metrics` has its counts).
        return result.wait_until_finish();
    }
    if let Some(error) = result.error() {
        // Counts of a failed job are partial: the failure is the result.
        println!("job {}: {}: {error}", result.job_id(), result.state());
        return result.wait_until_finish();
    }
    let m = result.metrics();
    println!(
        "job {}: {} in {:.2}s",
        result.job_id(),
        result.state(),
        m.wall_time.as_secs_f64()
    );
    println!(
        "{} customers written; {} orders of unknown customers",
        m.transform("Spend")
            .and_then(|t| t.elements_out)
            .unwrap_or(0),
        m.counter("Spend", "orders_of_unknown_customers")
            .unwrap_or(0)
    );
    for committed in result.outputs() {
        println!("output: {committed}");
    }
    result.wait_until_finish()
}
