import { ArrowRight, Rocket, ShieldCheck, Sparkles, Zap } from "lucide-react";

import { Pricing } from "@/components/pricing";
import { SiteHeader } from "@/components/site-header";
import { Button } from "@/components/ui/button";
import { Separator } from "@/components/ui/separator";

const features = [
  { icon: Zap, title: "Fast", text: "Pages load in a blink on any device." },
  { icon: ShieldCheck, title: "Secure", text: "Your data is encrypted at rest and in transit." },
  { icon: Sparkles, title: "Delightful", text: "Thoughtful details your customers will notice." },
  { icon: Rocket, title: "Ready to grow", text: "From the first user to the millionth." },
];

const faq = [
  { q: "Can I cancel any time?", a: "Yes. Plans are monthly and you can cancel with one click." },
  { q: "Is there a free trial?", a: "The Starter plan is free forever; Pro has a 14-day trial." },
];

export default function App() {
  return (
    <div className="min-h-screen bg-background">
      <SiteHeader />
      <main>
        <section className="mx-auto max-w-6xl px-6 py-24 text-center">
          <p className="text-sm font-medium text-primary">New: launch in minutes</p>
          <h1 className="mx-auto mt-3 max-w-3xl text-4xl font-semibold tracking-tight sm:text-6xl">
            The simplest way to bring your idea online
          </h1>
          <p className="mx-auto mt-6 max-w-2xl text-lg text-muted-foreground">
            Brightside gives you everything you need to launch, measure and grow, without the busywork.
          </p>
          <div className="mt-10 flex justify-center gap-3">
            <Button size="lg">
              Start free <ArrowRight />
            </Button>
            <Button size="lg" variant="outline">
              See how it works
            </Button>
          </div>
        </section>
        <section id="features" className="border-y bg-muted/40">
          <div className="mx-auto grid max-w-6xl gap-8 px-6 py-20 sm:grid-cols-2 lg:grid-cols-4">
            {features.map(({ icon: Icon, title, text }) => (
              <div key={title}>
                <div className="flex size-10 items-center justify-center rounded-lg bg-primary text-primary-foreground">
                  <Icon className="size-5" />
                </div>
                <h3 className="mt-4 font-semibold">{title}</h3>
                <p className="mt-1 text-sm text-muted-foreground">{text}</p>
              </div>
            ))}
          </div>
        </section>
        <Pricing />
        <section id="faq" className="mx-auto max-w-3xl px-6 pb-20">
          <h2 className="text-center text-3xl font-semibold tracking-tight">Questions</h2>
          <div className="mt-8 space-y-6">
            {faq.map(({ q, a }) => (
              <div key={q}>
                <h3 className="font-medium">{q}</h3>
                <p className="mt-1 text-muted-foreground">{a}</p>
              </div>
            ))}
          </div>
        </section>
      </main>
      <Separator />
      <footer className="mx-auto flex max-w-6xl flex-col gap-2 px-6 py-8 text-sm text-muted-foreground sm:flex-row sm:justify-between">
        <span>© {new Date().getFullYear()} Brightside</span>
        <span>Made with care</span>
      </footer>
    </div>
  );
}
