import { format, parseISO } from "date-fns";

import { Badge } from "@/components/ui/badge";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import type { Order } from "@/data";

const statusVariant = { paid: "default", pending: "secondary", refunded: "outline" } as const;

export function OrdersTable({ orders }: { orders: Order[] }) {
  return (
    <Table>
      <TableHeader>
        <TableRow>
          <TableHead>Order</TableHead>
          <TableHead>Customer</TableHead>
          <TableHead>Date</TableHead>
          <TableHead>Status</TableHead>
          <TableHead className="text-right">Amount</TableHead>
        </TableRow>
      </TableHeader>
      <TableBody>
        {orders.map((o) => (
          <TableRow key={o.id}>
            <TableCell className="font-medium">{o.id}</TableCell>
            <TableCell>
              <div>{o.customer}</div>
              <div className="text-xs text-muted-foreground">{o.email}</div>
            </TableCell>
            <TableCell>{format(parseISO(o.date), "MMM d")}</TableCell>
            <TableCell>
              <Badge variant={statusVariant[o.status]}>{o.status}</Badge>
            </TableCell>
            <TableCell className="text-right">${o.amount.toFixed(2)}</TableCell>
          </TableRow>
        ))}
      </TableBody>
    </Table>
  );
}
