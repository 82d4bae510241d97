import { Check } from "lucide-react";

import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardFooter, CardHeader, CardTitle } from "@/components/ui/card";
import { cn } from "@/lib/utils";

const plans = [
  { name: "Starter", price: "$0", blurb: "For trying it out.", features: ["1 project", "Community support"] },
  {
    name: "Pro",
    price: "$19",
    blurb: "For growing teams.",
    features: ["Unlimited projects", "Priority support", "Analytics"],
    popular: true,
  },
  { name: "Business", price: "$49", blurb: "For larger companies.", features: ["Everything in Pro", "SSO", "Audit log"] },
];

export function Pricing() {
  return (
    <section id="pricing" className="mx-auto max-w-6xl px-6 py-20">
      <h2 className="text-center text-3xl font-semibold tracking-tight">Simple pricing</h2>
      <p className="mt-2 text-center text-muted-foreground">Start free, upgrade when you need more.</p>
      <div className="mt-10 grid gap-6 md:grid-cols-3">
        {plans.map((plan) => (
          <Card key={plan.name} className={cn(plan.popular && "border-primary shadow-md")}>
            <CardHeader>
              <CardTitle className="flex items-center gap-2">
                {plan.name}
                {plan.popular && <Badge>Popular</Badge>}
              </CardTitle>
              <CardDescription>{plan.blurb}</CardDescription>
            </CardHeader>
            <CardContent className="space-y-4">
              <div className="text-4xl font-semibold">
                {plan.price}
                <span className="text-base font-normal text-muted-foreground">/month</span>
              </div>
              <ul className="space-y-2 text-sm">
                {plan.features.map((f) => (
                  <li key={f} className="flex items-center gap-2">
                    <Check className="size-4 text-primary" />
                    {f}
                  </li>
                ))}
              </ul>
            </CardContent>
            <CardFooter className="mt-auto">
              <Button className="w-full" variant={plan.popular ? "default" : "outline"}>
                Choose {plan.name}
              </Button>
            </CardFooter>
          </Card>
        ))}
      </div>
    </section>
  );
}
