import { useState } from "react";
import { Search } from "lucide-react";

import { Card, CardContent } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { OrdersTable } from "@/components/orders-table";
import { orders } from "@/data";

export function Orders() {
  const [query, setQuery] = useState("");
  const q = query.trim().toLowerCase();
  const shown = orders.filter((o) => !q || `${o.id} ${o.customer} ${o.email}`.toLowerCase().includes(q));
  return (
    <Card>
      <CardContent className="space-y-4">
        <div className="relative max-w-sm">
          <Search className="absolute top-2.5 left-2.5 size-4 text-muted-foreground" />
          <Input className="pl-8" placeholder="Search orders" value={query} onChange={(e) => setQuery(e.target.value)} />
        </div>
        <OrdersTable orders={shown} />
      </CardContent>
    </Card>
  );
}
